#include "ptq_network.hpp"

#include <adaquant/calibrate/adaquant.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace adaquant::examples {
namespace {
// The single consumer of value i, looking through identity nodes (folded batch norms); npos if
// none or several.
constexpr std::size_t npos = static_cast<std::size_t>(-1);
std::size_t sole_consumer(const network& net, std::size_t i) {
  std::size_t found = npos;
  for (std::size_t j = i + 1; j < net.size(); ++j)
    for (std::size_t in : net.at(j).inputs)
      if (in == i) {
        if (found != npos && found != j) return npos;
        found = j;
      }
  return found;
}

tensor slice(const tensor& x, std::size_t first, std::size_t count) {
  std::vector<std::size_t> shape = x.shape();
  shape[0] = count;
  const std::size_t per = x.item_size();
  std::vector<float> data(x.values().begin() + static_cast<std::ptrdiff_t>(first * per),
                          x.values().begin() + static_cast<std::ptrdiff_t>((first + count) * per));
  return tensor(shape, std::move(data));
}
}  // namespace

ptq_network::ptq_network(network net, tensor calibration)
    : fp_(std::move(net)), calib_(std::move(calibration)) {
  if (!(calib_.rank() == 4 && calib_.dim(0) > 0))
    detail::fail(errc::empty_input, "ptq_network: calibration", "needs [N > 0, C, H, W] images");
  // Fold every batch norm that directly follows a conv/linear used by nothing else.
  for (std::size_t i = 0; i < fp_.size(); ++i) {
    node& bn = fp_.at(i);
    if (bn.kind != op_kind::batch_norm) continue;
    const std::size_t src = bn.inputs.at(0);
    if (!fp_.at(src).quantizable() || sole_consumer(fp_, src) != i) continue;
    node& layer = fp_.at(src);
    adaquant::batch_norm_params p{bn.bn.gamma, bn.bn.beta, bn.bn.running_mean, bn.bn.running_var,
                                  bn.bn.eps};
    if (layer.bias.empty()) layer.bias.assign(p.channels(), 0.0f);
    const std::size_t oc = layer.weight.dim(0);
    fold_batch_norm(tensor_view<float>(layer.weight.data(), {oc, layer.weight.size() / oc}),
                    layer.bias, p);
    folded_[src] = std::move(p);
    bn.kind = op_kind::identity;
  }
  layers_ = fp_.quantizable_layers();
  for (std::size_t id : layers_) {
    std::size_t next = sole_consumer(fp_, id);
    while (next != npos && fp_.at(next).kind == op_kind::identity) next = sole_consumer(fp_, next);
    output_activation a = output_activation::none;
    if (next != npos && fp_.at(next).kind == op_kind::relu) a = output_activation::relu;
    if (next != npos && fp_.at(next).kind == op_kind::relu6) a = output_activation::relu6;
    activation_[id] = a;
  }
  // Input shapes from one image.
  const tensor one = slice(calib_, 0, 1);
  for (std::size_t id : layers_)
    fp_.at(id).capture = [this, id](const layer_io& io) {
      std::vector<std::size_t> s(io.input.shape().begin() + 1, io.input.shape().end());
      in_shape_[id] = s;
    };
  (void)fp_.forward(one);
  fp_.clear_hooks();
  q_ = fp_;
  // The full-precision predictions are the labels of the calibration loss.
  const tensor logits = fp_.forward(calib_);
  const std::size_t k = logits.dim(1);
  fp_labels_.resize(calib_.dim(0));
  for (std::size_t s = 0; s < fp_labels_.size(); ++s) {
    const float* row = logits.data() + s * k;
    fp_labels_[s] = static_cast<std::uint8_t>(std::max_element(row, row + k) - row);
  }
}

std::vector<layer_desc> ptq_network::quantizable_layers() const {
  std::vector<layer_desc> out;
  for (std::size_t id : layers_) {
    const node& n = fp_.at(id);
    layer_desc d;
    d.id = id;
    d.activation = activation_.at(id);
    d.weight = n.weight.span();
    d.bias = std::span<const float>(n.bias);
    const auto& s = in_shape_.at(id);
    if (n.kind == op_kind::linear) {
      d.geometry = layer_geometry::of(linear_geometry{n.weight.dim(1), n.weight.dim(0)});
    } else {
      conv2d_geometry g;
      g.in_channels = s.at(0);
      g.in_h = s.at(1);
      g.in_w = s.at(2);
      g.out_channels = n.weight.dim(0);
      g.kernel_h = n.weight.dim(2);
      g.kernel_w = n.weight.dim(3);
      g.stride_h = g.stride_w = n.geometry.stride;
      g.pad_h = g.pad_w = n.geometry.pad;
      g.groups = n.geometry.groups;
      d.geometry = layer_geometry::of(g);
    }
    out.push_back(d);
  }
  return out;
}

adaquant::layer_io ptq_network::capture(std::size_t id, std::size_t first, std::size_t count,
                                        capture_mode mode) {
  if (!(first + count <= calibration_size() && count > 0))
    detail::fail(errc::invalid_argument, "ptq_network::capture: first/count",
                 "samples [" + std::to_string(first) + ", " + std::to_string(first + count) +
                     ") outside the calibration set of " + std::to_string(calibration_size()));
  network& net = mode == capture_mode::full_precision ? fp_ : q_;
  adaquant::layer_io out;
  net.at(id).capture = [&out](const layer_io& io) {
    out.inputs = io.input.values();
    out.outputs = io.output.values();
  };
  (void)net.forward_until(slice(calib_, first, count), id);
  net.at(id).capture = nullptr;
  return out;
}

void ptq_network::set_quantized(const quantized_layer& q) {
  node& n = q_.at(q.id);
  n.weight = tensor(n.weight.shape(), q.weight);
  n.bias = q.bias;
  if (q.quantize_input) {
    const quant_params p = q.act_params;
    n.input_transform = [p](tensor& t) { fake_quant_per_tensor(t.view(), t.view(), p); };
  } else {
    n.input_transform = nullptr;
  }
}

const adaquant::batch_norm_params* ptq_network::folded_batch_norm(std::size_t id) const {
  const auto it = folded_.find(id);
  return it == folded_.end() ? nullptr : &it->second;
}

double ptq_network::calibration_loss(std::size_t limit) const {
  const std::size_t n = std::min(limit, calibration_size());
  const tensor logits = q_.forward(slice(calib_, 0, n));
  const auto ce = softmax_cross_entropy(logits, std::span(fp_labels_.data(), n));
  return std::accumulate(ce.begin(), ce.end(), 0.0) / static_cast<double>(n);
}

tensor calibration_images(const image_dataset& train, const normalisation& norm, std::size_t count,
                          std::uint64_t seed) {
  if (!(count > 0 && count <= train.count))
    detail::fail(
        errc::invalid_argument, "calibration_images: count",
        "must be in [1, " + std::to_string(train.count) + "], got " + std::to_string(count));
  std::vector<std::size_t> idx(train.count);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  detail::splitmix64 rng{seed};
  for (std::size_t i = 0; i < count; ++i)  // partial Fisher-Yates: the first `count` are chosen
    std::swap(idx[i], idx[i + rng.below(train.count - i)]);
  const std::size_t px = train.rows * train.cols;
  tensor out({count, 1, train.rows, train.cols});
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t p = 0; p < px; ++p) out[i * px + p] = norm(train.pixels[idx[i] * px + p]);
  return out;
}

}  // namespace adaquant::examples
