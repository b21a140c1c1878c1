#pragma once
// A small PipelineNetwork for tests: linear layers, batch norm folded into the first two, ReLU
// after them, on random calibration inputs. Everything is computed directly, so the pipelines'
// effect on the final output can be measured exactly.
#include <adaquant/adaquant.hpp>
#include <adaquant/bn/batch_norm.hpp>
#include <adaquant/bn/channel_moments.hpp>
#include <adaquant/pipeline/network.hpp>

#include <map>
#include <random>
#include <vector>

namespace toy {
namespace aq = adaquant;

struct layer {
  std::size_t in = 0, out = 0;
  std::vector<float> w, b;
  bool relu = true;
  std::optional<aq::batch_norm_params> bn;
};

class network {
 public:
  explicit network(std::size_t samples, std::uint32_t seed = 1) : n_(samples) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    const std::size_t widths[] = {12, 24, 24, 6};
    x_.resize(n_ * widths[0]);
    for (auto& v : x_) v = d(rng);
    for (std::size_t l = 0; l < 3; ++l) {
      layer L;
      L.in = widths[l];
      L.out = widths[l + 1];
      L.w.resize(L.in * L.out);
      for (auto& v : L.w) v = d(rng) / std::sqrt(static_cast<float>(L.in));
      L.b.assign(L.out, 0.0f);
      L.relu = l < 2;
      layers_.push_back(L);
      if (l < 2) {  // batch norm on its own statistics, then folded
        const auto y = run(capture_mode_fp, l, x_, n_).second;
        aq::channel_moments m(L.out, 1);
        m.observe(aq::tensor_view<const float>(y.data(), {n_, L.out}));
        aq::batch_norm_params bn;
        for (std::size_t c = 0; c < L.out; ++c) {
          bn.gamma.push_back(0.5f + 0.1f * static_cast<float>(c % 7));
          bn.beta.push_back(0.2f * static_cast<float>(c % 5) - 0.3f);
          bn.mean.push_back(static_cast<float>(m.mean(c)));
          bn.var.push_back(static_cast<float>(m.variance(c)));
        }
        aq::fold_batch_norm(aq::tensor_view<float>(layers_[l].w.data(), {L.out, L.in}),
                            layers_[l].b, bn);
        layers_[l].bn = bn;
      }
    }
    fp_out_ = run(capture_mode_fp, 2, x_, n_).second;
    for (float& v : fp_out_) v = v;  // the last layer has no activation
  }

  // PipelineNetwork
  std::size_t calibration_size() const { return n_; }
  std::vector<aq::layer_desc> quantizable_layers() const {
    std::vector<aq::layer_desc> out;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      aq::layer_desc d;
      d.id = l;
      d.geometry = aq::layer_geometry::of(aq::linear_geometry{layers_[l].in, layers_[l].out});
      d.activation = layers_[l].relu ? aq::output_activation::relu : aq::output_activation::none;
      d.weight = layers_[l].w;
      d.bias = layers_[l].b;
      out.push_back(d);
    }
    return out;
  }
  aq::layer_io capture(std::size_t id, std::size_t first, std::size_t count, aq::capture_mode m) {
    std::vector<float> x(x_.begin() + static_cast<std::ptrdiff_t>(first * layers_[0].in),
                         x_.begin() + static_cast<std::ptrdiff_t>((first + count) * layers_[0].in));
    auto [in, out] = run(m == aq::capture_mode::quantized, id, x, count);
    return {std::move(in), std::move(out)};
  }
  void set_quantized(const aq::quantized_layer& q) {
    q_[q.id] = q;
    ++set_calls;
  }
  const aq::batch_norm_params* folded_batch_norm(std::size_t id) const {
    return layers_.at(id).bn ? &*layers_.at(id).bn : nullptr;
  }

  // Mean squared error of the quantized network's final output against the full-precision one.
  double output_mse() {
    const auto y = run(true, 2, x_, n_).second;
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += std::pow(y[i] - fp_out_[i], 2);
    return s / static_cast<double>(y.size());
  }
  // LossNetwork: bit allocation minimises the final output's error.
  double calibration_loss() { return output_mse(); }
  const std::map<std::size_t, aq::quantized_layer>& quantized() const { return q_; }
  std::size_t set_calls = 0;

 private:
  static constexpr bool capture_mode_fp = false;

  // Runs layers [0, upto] in FP or quantized mode; returns upto's input and pre-activation output.
  std::pair<std::vector<float>, std::vector<float>> run(bool quantized, std::size_t upto,
                                                        std::vector<float> h, std::size_t n) const {
    for (std::size_t l = 0;; ++l) {
      const layer& L = layers_[l];
      const auto it = q_.find(l);
      const bool q = quantized && it != q_.end();
      std::vector<float> in = h;
      if (q && it->second.quantize_input)
        aq::fake_quant_per_tensor(aq::tensor_view<const float>(h.data(), {h.size()}),
                                  aq::tensor_view<float>(h.data(), {h.size()}),
                                  it->second.act_params);
      const std::vector<float>& w = q ? it->second.weight : L.w;
      const std::vector<float>& b = q ? it->second.bias : L.b;
      std::vector<float> y(n * L.out);
      for (std::size_t s = 0; s < n; ++s)
        for (std::size_t o = 0; o < L.out; ++o) {
          float acc = b[o];
          for (std::size_t i = 0; i < L.in; ++i) acc += w[o * L.in + i] * h[s * L.in + i];
          y[s * L.out + o] = acc;
        }
      if (l == upto) return {std::move(in), std::move(y)};
      if (L.relu)
        for (float& v : y) v = v > 0 ? v : 0;
      h = std::move(y);
    }
  }

  std::size_t n_;
  std::vector<float> x_, fp_out_;
  std::vector<layer> layers_;
  std::map<std::size_t, aq::quantized_layer> q_;
};

static_assert(aq::PipelineNetwork<network> && aq::LossNetwork<network>);
}  // namespace toy
