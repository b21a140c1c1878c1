#include <adaquant_runtime/network.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

namespace adaquant::examples {
namespace {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using std::ptrdiff_t;

void require(bool ok, std::string_view where, const std::string& why) {
  if (!ok) detail::fail(errc::shape_mismatch, where, why);
}

// Column k = (c * kh + i) * kw + j, row p = oh * wo + ow: the layout Eigen multiplies as [K, P].
void im2col(const float* x, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t kh, ptrdiff_t kw,
            ptrdiff_t s, ptrdiff_t pad, ptrdiff_t ho, ptrdiff_t wo, float* col) {
  for (ptrdiff_t ci = 0; ci < c; ++ci)
    for (ptrdiff_t i = 0; i < kh; ++i)
      for (ptrdiff_t j = 0; j < kw; ++j) {
        float* row = col + ((ci * kh + i) * kw + j) * ho * wo;
        const float* plane = x + ci * h * w;
        for (ptrdiff_t oh = 0; oh < ho; ++oh) {
          const ptrdiff_t ih = oh * s - pad + i;
          float* out = row + oh * wo;
          if (ih < 0 || ih >= h) {
            std::fill(out, out + wo, 0.0f);
            continue;
          }
          const float* in = plane + ih * w;
          for (ptrdiff_t ow = 0; ow < wo; ++ow) {
            const ptrdiff_t iw = ow * s - pad + j;
            out[ow] = (iw >= 0 && iw < w) ? in[iw] : 0.0f;
          }
        }
      }
}

// One channel of a depthwise conv, accumulated tap by tap so the inner loop vectorises.
void depthwise_plane(const float* in, const float* wk, ptrdiff_t h, ptrdiff_t w, ptrdiff_t kh,
                     ptrdiff_t kw, ptrdiff_t s, ptrdiff_t pad, ptrdiff_t ho, ptrdiff_t wo,
                     float* out) {
  std::fill(out, out + ho * wo, 0.0f);
  for (ptrdiff_t i = 0; i < kh; ++i)
    for (ptrdiff_t j = 0; j < kw; ++j) {
      const float wv = wk[i * kw + j];
      // ow range with 0 <= ow * s - pad + j < w
      const ptrdiff_t lo = std::max<ptrdiff_t>(0, (pad - j + s - 1) / s);
      const ptrdiff_t hi = std::min<ptrdiff_t>(wo, (w - 1 + pad - j) / s + 1);
      for (ptrdiff_t oh = 0; oh < ho; ++oh) {
        const ptrdiff_t ih = oh * s - pad + i;
        if (ih < 0 || ih >= h) continue;
        const float* row = in + ih * w - pad + j;
        float* o = out + oh * wo;
        if (s == 1) {
          for (ptrdiff_t ow = lo; ow < hi; ++ow) o[ow] += wv * row[ow];
        } else {
          for (ptrdiff_t ow = lo; ow < hi; ++ow) o[ow] += wv * row[ow * s];
        }
      }
    }
}

}  // namespace

std::string_view to_string(op_kind k) noexcept {
  switch (k) {
    case op_kind::input:
      return "input";
    case op_kind::conv2d:
      return "conv2d";
    case op_kind::linear:
      return "linear";
    case op_kind::batch_norm:
      return "batch_norm";
    case op_kind::relu:
      return "relu";
    case op_kind::relu6:
      return "relu6";
    case op_kind::add:
      return "add";
    case op_kind::global_avg_pool:
      return "global_avg_pool";
    case op_kind::identity:
      return "identity";
  }
  return "unknown";
}

tensor conv2d(const tensor& x, const tensor& w, const std::vector<float>& bias,
              const conv_geometry& g) {
  constexpr std::string_view where = "conv2d: x, w";
  require(x.rank() == 4 && w.rank() == 4, where, "expected NCHW input and OIHW weights");
  const auto n = static_cast<ptrdiff_t>(x.dim(0)), c = static_cast<ptrdiff_t>(x.dim(1)),
             h = static_cast<ptrdiff_t>(x.dim(2)), wd = static_cast<ptrdiff_t>(x.dim(3));
  const auto o = static_cast<ptrdiff_t>(w.dim(0)), cg = static_cast<ptrdiff_t>(w.dim(1)),
             kh = static_cast<ptrdiff_t>(w.dim(2)), kw = static_cast<ptrdiff_t>(w.dim(3));
  const auto groups = static_cast<ptrdiff_t>(g.groups), s = static_cast<ptrdiff_t>(g.stride),
             pad = static_cast<ptrdiff_t>(g.pad);
  require(groups >= 1 && s >= 1 && c == cg * groups && o % groups == 0, where,
          "input " + shape_string(x.shape()) + " does not fit weights " + shape_string(w.shape()) +
              " with " + std::to_string(groups) + " groups");
  require(h + 2 * pad >= kh && wd + 2 * pad >= kw, where, "kernel larger than padded input");
  require(bias.empty() || bias.size() == static_cast<std::size_t>(o), where, "bias size");
  const ptrdiff_t ho = (h + 2 * pad - kh) / s + 1, wo = (wd + 2 * pad - kw) / s + 1;
  const ptrdiff_t og = o / groups, k = cg * kh * kw, p = ho * wo;
  tensor y({x.dim(0), w.dim(0), static_cast<std::size_t>(ho), static_cast<std::size_t>(wo)});
  const float* xp = x.data();
  float* yp = y.data();
  if (cg == 1 && og == 1) {
    for (ptrdiff_t ni = 0; ni < n; ++ni)
      for (ptrdiff_t ci = 0; ci < o; ++ci)
        depthwise_plane(xp + (ni * c + ci) * h * wd, w.data() + ci * kh * kw, h, wd, kh, kw, s, pad,
                        ho, wo, yp + (ni * o + ci) * p);
  } else {
    const bool direct = kh == 1 && kw == 1 && s == 1 && pad == 0;
    std::vector<float> col(direct ? 0 : static_cast<std::size_t>(k * p));
    for (ptrdiff_t ni = 0; ni < n; ++ni)
      for (ptrdiff_t gi = 0; gi < groups; ++gi) {
        const float* xin = xp + (ni * c + gi * cg) * h * wd;
        if (!direct) im2col(xin, cg, h, wd, kh, kw, s, pad, ho, wo, col.data());
        Eigen::Map<const row_matrix> wm(w.data() + gi * og * k, og, k);
        Eigen::Map<const row_matrix> cm(direct ? xin : col.data(), k, p);
        Eigen::Map<row_matrix> ym(yp + (ni * o + gi * og) * p, og, p);
        ym.noalias() = wm * cm;
      }
  }
  if (!bias.empty())
    for (ptrdiff_t ni = 0; ni < n; ++ni)
      for (ptrdiff_t oi = 0; oi < o; ++oi) {
        float* plane = yp + (ni * o + oi) * p;
        const float b = bias[static_cast<std::size_t>(oi)];
        for (ptrdiff_t i = 0; i < p; ++i) plane[i] += b;
      }
  return y;
}

tensor linear(const tensor& x, const tensor& w, const std::vector<float>& bias) {
  constexpr std::string_view where = "linear: x, w";
  require(w.rank() == 2 && x.rank() >= 1, where, "expected [out, in] weights");
  const std::size_t n = x.dim(0), f = x.item_size(), o = w.dim(0);
  require(n == 0 || f == w.dim(1), where,
          "input " + shape_string(x.shape()) + " does not fit weights " + shape_string(w.shape()));
  require(bias.empty() || bias.size() == o, where, "bias size");
  tensor y({n, o});
  if (n == 0) return y;
  // One matrix-vector product per image: Eigen picks different kernels for different batch
  // sizes, and per-image results must not depend on the batch.
  Eigen::Map<const row_matrix> wm(w.data(), static_cast<ptrdiff_t>(o), static_cast<ptrdiff_t>(f));
  for (std::size_t i = 0; i < n; ++i) {
    Eigen::Map<const Eigen::VectorXf> xi(x.data() + i * f, static_cast<ptrdiff_t>(f));
    Eigen::Map<Eigen::VectorXf> yi(y.data() + i * o, static_cast<ptrdiff_t>(o));
    yi.noalias() = wm * xi;
  }
  if (!bias.empty())
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < o; ++j) y[i * o + j] += bias[j];
  return y;
}

void batch_norm_inplace(tensor& x, const batch_norm_params& p) {
  require(x.rank() >= 2 && x.dim(1) == p.gamma.size(), "batch_norm: x",
          "channel count of " + shape_string(x.shape()) + " differs from " +
              std::to_string(p.gamma.size()));
  const std::size_t n = x.dim(0), c = x.dim(1), hw = n == 0 || c == 0 ? 0 : x.size() / (n * c);
  for (std::size_t ci = 0; ci < c; ++ci) {
    const float scale = p.gamma[ci] / std::sqrt(p.running_var[ci] + p.eps);
    const float shift = p.beta[ci] - p.running_mean[ci] * scale;
    for (std::size_t ni = 0; ni < n; ++ni) {
      float* v = x.data() + (ni * c + ci) * hw;
      for (std::size_t i = 0; i < hw; ++i) v[i] = v[i] * scale + shift;
    }
  }
}

std::vector<double> softmax_cross_entropy(const tensor& logits,
                                          std::span<const std::uint8_t> labels) {
  require(logits.rank() == 2 && logits.dim(0) == labels.size(), "softmax_cross_entropy: logits",
          "expected [N, K] logits for " + std::to_string(labels.size()) + " labels, got " +
              shape_string(logits.shape()));
  const std::size_t n = logits.dim(0), k = logits.dim(1);
  std::vector<double> loss(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!(labels[i] < k))
      detail::fail(errc::invalid_argument, "softmax_cross_entropy: labels",
                   "label " + std::to_string(labels[i]) + " >= " + std::to_string(k));
    const float* z = logits.data() + i * k;
    const double m = *std::max_element(z, z + k);
    double sum = 0.0;
    for (std::size_t j = 0; j < k; ++j) sum += std::exp(z[j] - m);
    loss[i] = m + std::log(sum) - z[labels[i]];
  }
  return loss;
}

// ------------------------------------------------------------------------------------ network
network::network() {
  node in;
  in.name = "input";
  in.kind = op_kind::input;
  nodes_.push_back(std::move(in));
}

std::size_t network::push(node n) {
  for (const std::size_t i : n.inputs)
    if (!(i < nodes_.size()))
      detail::fail(errc::invalid_argument, "network: " + n.name,
                   "input value " + std::to_string(i) + " does not exist yet");
  for (const node& m : nodes_)
    if (!(m.name != n.name))
      detail::fail(errc::invalid_argument, "network: " + n.name, "duplicate node name");
  nodes_.push_back(std::move(n));
  return nodes_.size() - 1;
}

// A node of kind k reading values `in`; the builders add what their kind needs.
static node simple(std::string name, op_kind k, std::vector<std::size_t> in) {
  node n;
  n.name = std::move(name);
  n.kind = k;
  n.inputs = std::move(in);
  return n;
}

std::size_t network::add_conv2d(std::string name, std::size_t input, tensor weight,
                                std::vector<float> bias, conv_geometry g) {
  if (!(weight.rank() == 4 && g.groups >= 1 && g.stride >= 1 && weight.dim(0) % g.groups == 0 &&
        (bias.empty() || bias.size() == weight.dim(0))))
    detail::fail(errc::shape_mismatch, "network::add_conv2d: " + name,
                 "weights " + shape_string(weight.shape()) + ", bias " +
                     std::to_string(bias.size()) + ", groups " + std::to_string(g.groups));
  node n = simple(std::move(name), op_kind::conv2d, {input});
  n.weight = std::move(weight);
  n.bias = std::move(bias);
  n.geometry = g;
  return push(std::move(n));
}

std::size_t network::add_linear(std::string name, std::size_t input, tensor weight,
                                std::vector<float> bias) {
  if (!(weight.rank() == 2 && (bias.empty() || bias.size() == weight.dim(0))))
    detail::fail(
        errc::shape_mismatch, "network::add_linear: " + name,
        "weights " + shape_string(weight.shape()) + ", bias " + std::to_string(bias.size()));
  node n = simple(std::move(name), op_kind::linear, {input});
  n.weight = std::move(weight);
  n.bias = std::move(bias);
  return push(std::move(n));
}

std::size_t network::add_batch_norm(std::string name, std::size_t input, batch_norm_params p) {
  const std::size_t c = p.gamma.size();
  if (!(p.beta.size() == c && p.running_mean.size() == c && p.running_var.size() == c && p.eps > 0))
    detail::fail(errc::shape_mismatch, "network::add_batch_norm: " + name,
                 "gamma, beta, mean and var must have the same size and eps > 0");
  node n = simple(std::move(name), op_kind::batch_norm, {input});
  n.bn = std::move(p);
  return push(std::move(n));
}

std::size_t network::add_relu(std::string name, std::size_t input) {
  return push(simple(std::move(name), op_kind::relu, {input}));
}
std::size_t network::add_relu6(std::string name, std::size_t input) {
  return push(simple(std::move(name), op_kind::relu6, {input}));
}
std::size_t network::add_add(std::string name, std::size_t a, std::size_t b) {
  return push(simple(std::move(name), op_kind::add, {a, b}));
}
std::size_t network::add_global_avg_pool(std::string name, std::size_t input) {
  return push(simple(std::move(name), op_kind::global_avg_pool, {input}));
}

tensor network::forward(const tensor& x) const { return forward_until(x, nodes_.size() - 1); }

tensor network::forward_until(const tensor& x, std::size_t last) const {
  return forward_from(start(x), last);
}

forward_state network::start(tensor x) const {
  if (!(x.rank() == 4)) detail::fail(errc::shape_mismatch, "network::forward: x", "expected NCHW");
  forward_state s;
  s.live.emplace(0, std::move(x));
  return s;
}

tensor network::forward_from(forward_state s, std::size_t last, std::size_t save_before,
                             forward_state* saved) const {
  if (!(s.next >= 1 && s.next <= last && last < nodes_.size()))
    detail::fail(errc::invalid_argument, "network::forward_from: last",
                 "node " + std::to_string(last) + " is not in [" + std::to_string(s.next) + ", " +
                     std::to_string(nodes_.size() - 1) + "]");
  if (saved && !(save_before >= s.next && save_before <= last))
    detail::fail(errc::invalid_argument, "network::forward_from: save_before",
                 "node " + std::to_string(save_before) + " is not in [" + std::to_string(s.next) +
                     ", " + std::to_string(last) + "]");
  // The last node (anywhere in the network) that reads each value: a value is freed or moved
  // once nothing reads it any more, and a saved state keeps what later nodes still read.
  constexpr std::size_t never = std::numeric_limits<std::size_t>::max();
  std::vector<std::size_t> last_use(nodes_.size(), 0);
  for (std::size_t i = 1; i < nodes_.size(); ++i)
    for (const std::size_t v : nodes_[i].inputs) last_use[v] = std::max(last_use[v], i);
  last_use[last] = never;

  std::vector<tensor> values(last + 1);
  std::vector<bool> have(last + 1, false);
  for (auto& [v, t] : s.live)
    if (v < s.next) {
      values[v] = std::move(t);
      have[v] = true;
    }
  // The input value of node i: moved out when node i is its last reader and reads it once.
  auto take = [&](std::size_t i, std::size_t k) -> tensor {
    const std::size_t v = nodes_[i].inputs[k];
    const bool once = std::count(nodes_[i].inputs.begin(), nodes_[i].inputs.end(), v) == 1;
    if (last_use[v] == i && once) return std::move(values[v]);
    return values[v];
  };
  for (std::size_t i = s.next; i <= last; ++i) {
    if (saved && i == save_before) {
      saved->next = i;
      saved->live.clear();
      for (std::size_t v = 0; v < i; ++v)
        if (have[v] && last_use[v] >= i) saved->live.emplace(v, values[v]);
    }
    const node& nd = nodes_[i];
    for (const std::size_t v : nd.inputs)
      if (!have[v])
        detail::fail(errc::invalid_argument, "network::forward_from: s",
                     "value " + std::to_string(v) + " read by " + nd.name + " is not in the state");
    switch (nd.kind) {
      case op_kind::conv2d:
      case op_kind::linear: {
        const tensor& in = values[nd.inputs[0]];
        tensor transformed;
        if (nd.input_transform) {
          transformed = in;
          nd.input_transform(transformed);
        }
        const tensor& li = nd.input_transform ? transformed : in;
        values[i] = nd.kind == op_kind::conv2d ? conv2d(li, nd.weight, nd.bias, nd.geometry)
                                               : linear(li, nd.weight, nd.bias);
        if (nd.capture) nd.capture(layer_io{in, li, values[i]});
        break;
      }
      case op_kind::batch_norm: {
        if (nd.bn_observer) nd.bn_observer(values[nd.inputs[0]]);
        values[i] = take(i, 0);
        batch_norm_inplace(values[i], nd.bn);
        break;
      }
      case op_kind::relu: {
        values[i] = take(i, 0);
        for (float& v : values[i].span()) v = v > 0.0f ? v : 0.0f;
        break;
      }
      case op_kind::relu6: {
        values[i] = take(i, 0);
        for (float& v : values[i].span()) v = std::min(std::max(v, 0.0f), 6.0f);
        break;
      }
      case op_kind::add: {
        const tensor& b = values[nd.inputs[1]];
        tensor a = take(i, 0);
        if (!(a.shape() == b.shape()))
          detail::fail(errc::shape_mismatch, "network::forward: " + nd.name,
                       shape_string(a.shape()) + " + " + shape_string(b.shape()));
        for (std::size_t j = 0; j < a.size(); ++j) a[j] += b[j];
        values[i] = std::move(a);
        break;
      }
      case op_kind::global_avg_pool: {
        const tensor& in = values[nd.inputs[0]];
        if (!(in.rank() == 4))
          detail::fail(errc::shape_mismatch, "network::forward: " + nd.name, "expected NCHW");
        const std::size_t n = in.dim(0), c = in.dim(1), hw = in.dim(2) * in.dim(3);
        tensor y({n, c});
        for (std::size_t j = 0; j < n * c; ++j) {
          double s = 0.0;
          for (std::size_t k = 0; k < hw; ++k) s += in[j * hw + k];
          y[j] = static_cast<float>(s / static_cast<double>(hw));
        }
        values[i] = std::move(y);
        break;
      }
      case op_kind::identity:
        values[i] = take(i, 0);
        break;
      case op_kind::input:
        break;
    }
    have[i] = true;
    for (const std::size_t v : nd.inputs)
      if (last_use[v] == i) {
        values[v] = tensor();
        have[v] = false;
      }
  }
  return std::move(values[last]);
}

std::size_t network::index_of(std::string_view name) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].name == name) return i;
  detail::fail(errc::invalid_argument, "network::index_of: name",
               "no node called \"" + std::string(name) + "\"");
}

std::vector<std::size_t> network::quantizable_layers() const {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].quantizable()) out.push_back(i);
  return out;
}

std::vector<std::size_t> network::batch_norm_layers() const {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].kind == op_kind::batch_norm) out.push_back(i);
  return out;
}

void network::set_weight(std::string_view layer, tensor w) {
  node& n = at(layer);
  if (!(n.quantizable() && w.shape() == n.weight.shape()))
    detail::fail(errc::shape_mismatch, "network::set_weight: " + std::string(layer),
                 "expected a conv2d/linear layer and weights of shape " +
                     shape_string(n.weight.shape()) + ", got " + shape_string(w.shape()));
  n.weight = std::move(w);
}

void network::set_bias(std::string_view layer, std::vector<float> b) {
  node& n = at(layer);
  const std::size_t outputs = n.quantizable() ? n.weight.dim(0) : 0;
  if (!(n.quantizable() && b.size() == outputs))
    detail::fail(errc::shape_mismatch, "network::set_bias: " + std::string(layer),
                 "expected a conv2d/linear layer and " + std::to_string(outputs) + " biases, got " +
                     std::to_string(b.size()));
  n.bias = std::move(b);
}

void network::clear_hooks() {
  for (node& n : nodes_) {
    n.input_transform = nullptr;
    n.capture = nullptr;
    n.bn_observer = nullptr;
  }
}

std::size_t network::parameter_count() const {
  std::size_t total = 0;
  for (const node& n : nodes_) {
    if (n.quantizable()) total += n.weight.size() + n.bias.size();
    if (n.kind == op_kind::batch_norm) total += n.bn.gamma.size() + n.bn.beta.size();
  }
  return total;
}

std::size_t network::macs_per_image(std::size_t c, std::size_t h, std::size_t w) const {
  struct shp {
    std::size_t c, h, w;
  };
  std::vector<shp> s(nodes_.size());
  s[0] = {c, h, w};
  std::size_t macs = 0;
  for (std::size_t i = 1; i < nodes_.size(); ++i) {
    const node& n = nodes_[i];
    const shp in = s[n.inputs[0]];
    s[i] = in;
    if (n.kind == op_kind::conv2d) {
      const auto& g = n.geometry;
      const std::size_t ho = (in.h + 2 * g.pad - n.weight.dim(2)) / g.stride + 1;
      const std::size_t wo = (in.w + 2 * g.pad - n.weight.dim(3)) / g.stride + 1;
      s[i] = {n.weight.dim(0), ho, wo};
      macs += ho * wo * n.weight.size();
    } else if (n.kind == op_kind::linear) {
      s[i] = {n.weight.dim(0), 1, 1};
      macs += n.weight.size();
    } else if (n.kind == op_kind::global_avg_pool) {
      s[i] = {in.c, 1, 1};
    }
  }
  return macs;
}

std::map<std::size_t, adaquant::batch_norm_params> fold_batch_norms_recorded(network& net) {
  std::map<std::size_t, adaquant::batch_norm_params> folded;
  for (std::size_t i = 1; i < net.size(); ++i) {
    node& bn = net.at(i);
    if (bn.kind != op_kind::batch_norm) continue;
    const std::size_t src = bn.inputs[0];
    node& layer = net.at(src);
    if (!layer.quantizable()) continue;
    std::size_t readers = 0;
    for (const node& m : net.nodes())
      readers += static_cast<std::size_t>(std::count(m.inputs.begin(), m.inputs.end(), src));
    if (readers != 1) continue;
    const std::size_t o = layer.weight.dim(0);
    if (layer.bias.empty()) layer.bias.assign(o, 0.0f);
    adaquant::batch_norm_params p{bn.bn.gamma, bn.bn.beta, bn.bn.running_mean, bn.bn.running_var,
                                  bn.bn.eps};
    adaquant::fold_batch_norm(tensor_view<float>(layer.weight.data(), {o, layer.weight.size() / o}),
                              layer.bias, p);
    folded[src] = std::move(p);
    bn.kind = op_kind::identity;
    bn.bn = {};
    bn.bn_observer = nullptr;
  }
  return folded;
}

std::size_t fold_batch_norms(network& net) { return fold_batch_norms_recorded(net).size(); }

}  // namespace adaquant::examples
