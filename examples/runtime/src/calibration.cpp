#include <adaquant_runtime/calibration.hpp>

#include <adaquant/core/parallel.hpp>

#include <adaquant/kernels/fake_quant.hpp>

#include <algorithm>

namespace adaquant::examples {
namespace {

// Per-node item shapes (C, H, W) for a C x H x W input; linear outputs are (F, 1, 1).
std::vector<std::array<std::size_t, 3>> item_shapes(const network& net, std::size_t c,
                                                    std::size_t h, std::size_t w) {
  std::vector<std::array<std::size_t, 3>> s(net.size());
  s[0] = {c, h, w};
  for (std::size_t i = 1; i < net.size(); ++i) {
    const node& n = net.at(i);
    const auto in = s[n.inputs[0]];
    s[i] = in;
    if (n.kind == op_kind::conv2d) {
      const auto& g = n.geometry;
      s[i] = {n.weight.dim(0), (in[1] + 2 * g.pad - n.weight.dim(2)) / g.stride + 1,
              (in[2] + 2 * g.pad - n.weight.dim(3)) / g.stride + 1};
    } else if (n.kind == op_kind::linear) {
      s[i] = {n.weight.dim(0), 1, 1};
    } else if (n.kind == op_kind::global_avg_pool) {
      s[i] = {in[0], 1, 1};
    }
  }
  return s;
}

output_activation following_activation(const network& net, std::size_t v) {
  while (true) {
    std::vector<std::size_t> readers;
    for (std::size_t i = v + 1; i < net.size(); ++i)
      if (std::count(net.at(i).inputs.begin(), net.at(i).inputs.end(), v)) readers.push_back(i);
    if (readers.size() != 1) return output_activation::none;
    const node& r = net.at(readers[0]);
    if (r.kind == op_kind::identity) {
      v = readers[0];
      continue;
    }
    if (r.kind == op_kind::relu) return output_activation::relu;
    if (r.kind == op_kind::relu6) return output_activation::relu6;
    return output_activation::none;
  }
}

}  // namespace

calibration_network::calibration_network(network net, tensor calibration_inputs,
                                         std::size_t threads)
    : net_(std::move(net)),
      quantized_net_(net_),
      inputs_(std::move(calibration_inputs)),
      threads_(resolve_threads(threads)) {
  if (!(inputs_.rank() == 4 && inputs_.dim(0) > 0))
    detail::fail(errc::shape_mismatch, "calibration_network: calibration_inputs",
                 "expected a non-empty N x C x H x W tensor, got " + shape_string(inputs_.shape()));
  shapes_ = item_shapes(net_, inputs_.dim(1), inputs_.dim(2), inputs_.dim(3));
  const auto& shapes = shapes_;
  last_read_.assign(net_.size(), 0);
  for (std::size_t i = 1; i < net_.size(); ++i)
    for (const std::size_t v : net_.at(i).inputs) last_read_[v] = std::max(last_read_[v], i);
  last_read_.back() = net_.size();
  for (const std::size_t i : net_.quantizable_layers()) {
    const node& n = net_.at(i);
    const auto in = shapes[n.inputs[0]];
    layer_desc d;
    d.id = i;
    if (n.kind == op_kind::linear) {
      d.geometry = layer_geometry::of(linear_geometry{n.weight.dim(1), n.weight.dim(0)});
    } else {
      conv2d_geometry g;
      g.in_channels = in[0];
      g.in_h = in[1];
      g.in_w = in[2];
      g.out_channels = n.weight.dim(0);
      g.kernel_h = n.weight.dim(2);
      g.kernel_w = n.weight.dim(3);
      g.stride_h = g.stride_w = n.geometry.stride;
      g.pad_h = g.pad_w = n.geometry.pad;
      g.groups = n.geometry.groups;
      d.geometry = layer_geometry::of(g);
    }
    d.activation = following_activation(net_, i);
    d.weight = n.weight.span();
    d.bias = n.bias;
    layers_.push_back(d);
  }
}

std::vector<layer_desc> calibration_network::quantizable_layers() const { return layers_; }

void apply_quantized_layer(network& net, const quantized_layer& q) {
  node& n = net.at(q.id);
  if (!(n.quantizable() && q.weight.size() == n.weight.size() && q.bias.size() == n.weight.dim(0)))
    detail::fail(errc::shape_mismatch, "apply_quantized_layer: q",
                 "layer " + std::to_string(q.id) + " is not a conv2d/linear of " +
                     std::to_string(n.weight.size()) + " weights and " +
                     std::to_string(n.weight.dim(0)) + " biases");
  std::copy(q.weight.begin(), q.weight.end(), n.weight.data());
  n.bias = q.bias;
  if (q.quantize_input) {
    const quant_params p = q.act_params;
    const rounding_mode r = q.act_rounding;
    n.input_transform = [p, r](tensor& t) {
      with_rounding(r, [&]<class R>(R) { fake_quant_per_tensor<R>(t.view(), t.view(), p); });
    };
  } else {
    n.input_transform = nullptr;
  }
}

adaquant::layer_io calibration_network::capture(std::size_t layer_id, std::size_t first,
                                                std::size_t count, capture_mode mode) {
  if (!(layer_id < net_.size() && net_.at(layer_id).quantizable()))
    detail::fail(errc::invalid_argument, "calibration_network::capture: layer_id",
                 std::to_string(layer_id) + " is not a quantizable layer");
  if (!(first <= calibration_size() && count <= calibration_size() - first))
    detail::fail(errc::invalid_argument, "calibration_network::capture: first, count",
                 "samples beyond the " + std::to_string(calibration_size()) + " held");
  const network& run = mode == capture_mode::quantized ? quantized_net_ : net_;
  const std::size_t input_value = run.at(layer_id).inputs[0];
  const sample_split parts = passes_for(mode, first, count);
  adaquant::layer_io io;
  const layer_desc* d = nullptr;
  for (const layer_desc& l : layers_)
    if (l.id == layer_id) d = &l;
  const std::size_t in_per = d->geometry.input_per_sample(),
                    out_per = d->geometry.output_per_sample();
  io.inputs.resize(count * in_per);
  io.outputs.resize(count * out_per);
  parallel_for(parts.pass.size(), threads_, [&](std::size_t p) {
    const tensor out = parts.pass[p]->run(run, layer_id, layer_id);
    const tensor& in = parts.pass[p]->kept().live.at(input_value);
    const std::size_t at = parts.begin[p] - first;
    std::copy(in.data(), in.data() + in.size(), io.inputs.begin() + at * in_per);
    std::copy(out.data(), out.data() + out.size(), io.outputs.begin() + at * out_per);
  });
  return io;
}

calibration_network::sample_split calibration_network::passes_for(capture_mode mode,
                                                                  std::size_t first,
                                                                  std::size_t count) {
  // One part per thread; the parts (and so the cached passes) depend only on (first, count).
  const std::size_t parts = std::max<std::size_t>(1, std::min(threads_, count));
  sample_split s{std::vector<std::size_t>(parts + 1), std::vector<resumable_forward*>(parts)};
  for (std::size_t p = 0; p <= parts; ++p) s.begin[p] = first + count * p / parts;
  for (std::size_t p = 0; p < parts; ++p) {
    const std::size_t b = s.begin[p], n = s.begin[p + 1] - b;
    auto [it, fresh] = passes_.try_emplace({mode, b, n});
    if (fresh) it->second = resumable_forward(inputs_.items(b, b + n));
    s.pass[p] = &it->second;
  }
  return s;
}

void calibration_network::set_quantized(const quantized_layer& q) {
  apply_quantized_layer(quantized_net_, q);  // validates before changing anything
  for (auto& [key, pass] : passes_)
    if (std::get<0>(key) == capture_mode::quantized) pass.invalidate_from(q.id);
}

}  // namespace adaquant::examples
