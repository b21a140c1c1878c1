#pragma once
// Shared helpers for the AdaQuant tests: random layers and their full-precision outputs.

#include <adaquant/calibrate/adaquant.hpp>

#include <random>
#include <vector>

namespace adaquant_test {

inline std::vector<float> randn(std::size_t n, float sd, std::uint32_t seed, float mean = 0.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(mean, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

// A random layer with N cached samples; inputs are ReLU'd when `relu_inputs`.
struct random_layer {
  adaquant::layer_geometry geometry;
  std::vector<float> w, b, x, y;
  std::size_t n = 0;

  random_layer(const adaquant::layer_geometry& g, std::size_t samples, std::uint32_t seed,
               bool relu_inputs = true)
      : geometry(g), n(samples) {
    const float wsd = 1.0f / std::sqrt(static_cast<float>(g.weights_per_channel()));
    w = randn(g.weight_size(), wsd, seed);
    b = randn(g.out_channels(), 0.1f, seed + 1);
    x = randn(samples * g.input_per_sample(), 1.0f, seed + 2, relu_inputs ? 0.3f : 0.0f);
    if (relu_inputs)
      for (float& v : x) v = v > 0.0f ? v : 0.0f;
    y.resize(samples * g.output_per_sample());
    if (g.kind == adaquant::layer_kind::linear)
      adaquant::linear_forward(g.linear, x, w, b, y);
    else
      adaquant::conv2d_forward(g.conv, x, w, b, y);
  }
};

inline adaquant::layer_geometry linear_geom(std::size_t in, std::size_t out) {
  return adaquant::layer_geometry::of(adaquant::linear_geometry{in, out});
}

inline adaquant::layer_geometry conv_geom(std::size_t cin, std::size_t cout, std::size_t h,
                                          std::size_t w, std::size_t k, std::size_t stride = 1,
                                          std::size_t pad = 0, std::size_t dil = 1,
                                          std::size_t groups = 1) {
  adaquant::conv2d_geometry c;
  c.in_channels = cin;
  c.out_channels = cout;
  c.in_h = h;
  c.in_w = w;
  c.kernel_h = c.kernel_w = k;
  c.stride_h = c.stride_w = stride;
  c.pad_h = c.pad_w = pad;
  c.dilation_h = c.dilation_w = dil;
  c.groups = groups;
  return adaquant::layer_geometry::of(c);
}

}  // namespace adaquant_test
