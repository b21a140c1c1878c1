#pragma once
// Seeded synthetic bit-allocation problems with a realistic shape, for the tests and benchmarks
// (test support, not installed). Deterministic on every platform: the generator is splitmix64
// and no <random> distribution is involved.
//
// Each layer gets params ~ log-uniform [1e3, 1e7) and MACs = params x spatial positions
// (log-uniform [1, 3136)). Options are bits_w in {2, 3, 4, 8} x bits_a in {4, 8}:
//   size_bytes = ceil(params * bits_w / 8),  bops = MACs * bits_w * bits_a,
//   loss_delta = s_w * 4^-(bits_w - 2) + s_a * 4^-(bits_a - 4) - (the same at 8/8 bits),
// with per-layer sensitivities s_w, s_a log-uniform over three decades and a +-10% multiplicative
// jitter, so the loss falls convexly as bits grow (quantization noise power ~ 4^-bits).

#include <adaquant/bitalloc/problem.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace adaquant {

struct synthetic_bit_allocation {
  bit_allocation_problem problem;  // resources {"size_bytes", "bops"}
  double size_budget = 0.0;        // min + 0.35 x (max - min) total size: about 3.7-bit weights
  double bops_budget = 0.0;        // min + 0.30 x (max - min) total BOPs
};

namespace detail {
struct splitmix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double log_uniform(double lo, double hi) { return lo * std::pow(hi / lo, uniform()); }
};
}  // namespace detail

[[nodiscard]] inline synthetic_bit_allocation make_synthetic_bit_allocation(std::size_t layers,
                                                                            std::uint64_t seed) {
  synthetic_bit_allocation out;
  auto& p = out.problem;
  p.resource_names = {"size_bytes", "bops"};
  detail::splitmix64 rng{seed};
  constexpr int ws[] = {2, 3, 4, 8};
  constexpr int as[] = {4, 8};
  double min_size = 0, max_size = 0, min_bops = 0, max_bops = 0;
  for (std::size_t l = 0; l < layers; ++l) {
    bit_allocation_layer layer;
    layer.name = "layer" + std::to_string(l);
    const double params = std::floor(rng.log_uniform(1e3, 1e7));
    const double macs = params * std::floor(rng.log_uniform(1.0, 3136.0));
    const double sw = rng.log_uniform(1e-4, 1e-1), sa = rng.log_uniform(1e-4, 1e-1);
    auto noise = [](int bits, int lo) { return std::pow(4.0, -(bits - lo)); };
    const double base = sw * noise(8, 2) + sa * noise(8, 4);
    double lmin_s = 1e300, lmax_s = 0, lmin_b = 1e300, lmax_b = 0;
    for (int w : ws)
      for (int a : as) {
        bit_option o;
        o.bits = {w, a};
        const double jitter = (w == 8 && a == 8) ? 1.0 : 1.0 + 0.2 * (rng.uniform() - 0.5);
        o.loss_delta = std::max(0.0, (sw * noise(w, 2) + sa * noise(a, 4)) * jitter - base);
        const double size = std::ceil(params * w / 8.0);
        const double bops = macs * w * a;
        o.resources = {size, bops};
        lmin_s = std::min(lmin_s, size);
        lmax_s = std::max(lmax_s, size);
        lmin_b = std::min(lmin_b, bops);
        lmax_b = std::max(lmax_b, bops);
        layer.options.push_back(std::move(o));
      }
    min_size += lmin_s;
    max_size += lmax_s;
    min_bops += lmin_b;
    max_bops += lmax_b;
    p.layers.push_back(std::move(layer));
  }
  out.size_budget = std::floor(min_size + 0.35 * (max_size - min_size));
  out.bops_budget = std::floor(min_bops + 0.30 * (max_bops - min_bops));
  return out;
}

}  // namespace adaquant
