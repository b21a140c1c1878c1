#pragma once
// Sensitivity tables for bit allocation, measured as the paper does: start from a base
// configuration (every layer at 8/8 bits), change one layer at a time to each candidate, and
// record the calibration-loss increase
//
//   dL[l][c] = loss(base with layer l set to candidate c) - loss(base).
//
// Additivity assumption: the integer program scores a mixed configuration by sum_l dL[l][x_l],
// i.e. it assumes the layers' loss increases add up independently. That holds to first order
// when each layer's quantization noise is small and uncorrelated with the others'; it
// underestimates the loss when many layers drop to very low bit-widths at once. Re-measure the
// chosen configuration's real loss; the pipelines' bit allocation (pipeline/bit_allocation.hpp)
// re-measures dL around each chosen configuration and compares with uniform bit-widths.
//
// Measured differences can come out slightly negative (evaluation noise, or a lower bit-width
// acting as a regulariser). The solver requires dL >= 0, so negative values are clamped to 0 by
// default and counted in sensitivity_table::clamped; negative_delta::fail turns them into errors.

#include <adaquant/bitalloc/problem.hpp>
#include <adaquant/core/error.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace adaquant {

// A callable scoring a whole-network configuration (one bit_config per layer) by its calibration
// loss; smaller is better.
template <class F>
concept LossEvaluator = std::invocable<F&, std::span<const bit_config>> &&
                        std::convertible_to < std::invoke_result_t<F&, std::span<const bit_config>>,
double > ;

enum class negative_delta { clamp_to_zero, fail };

struct sensitivity_table {
  double base_loss = 0.0;
  bit_config base{};
  std::vector<bit_config> candidates;
  std::vector<std::vector<double>> loss_delta;  // [layer][candidate], >= 0
  std::size_t clamped = 0;                      // negative measurements set to 0
  std::size_t evaluations = 0;                  // calls made to the evaluator
};

// Layer sizes for the resource model: size_bytes = ceil(params * bits_w / 8),
// bops = macs * bits_w * bits_a.
struct layer_dims {
  std::string name;
  std::uint64_t params = 0;
  std::uint64_t macs = 0;
};

namespace detail {
inline void check_bits(bit_config c, std::string_view where) {
  if (!(c.bits_w >= 1 && c.bits_w <= 32 && c.bits_a >= 1 && c.bits_a <= 32))
    fail(errc::invalid_argument, where,
         "bits must be in [1, 32], got w" + std::to_string(c.bits_w) + "a" +
             std::to_string(c.bits_a));
}
}  // namespace detail

// Calls eval 1 + num_layers * (candidates other than base) times. A candidate equal to the base
// gets dL = 0 without an evaluation.
template <LossEvaluator Eval>
[[nodiscard]] sensitivity_table measure_sensitivity(
    Eval&& eval, std::size_t num_layers, std::span<const bit_config> candidates,
    bit_config base = {8, 8}, negative_delta policy = negative_delta::clamp_to_zero) {
  if (!(num_layers > 0))
    detail::fail(errc::empty_input, "measure_sensitivity: num_layers", "must be > 0");
  if (!(!candidates.empty()))
    detail::fail(errc::empty_input, "measure_sensitivity: candidates", "no candidate bit-widths");
  detail::check_bits(base, "measure_sensitivity: base");
  for (std::size_t c = 0; c < candidates.size(); ++c)
    detail::check_bits(candidates[c], "measure_sensitivity: candidates[" + std::to_string(c) + "]");

  sensitivity_table t;
  t.base = base;
  t.candidates.assign(candidates.begin(), candidates.end());
  std::vector<bit_config> cfg(num_layers, base);
  auto call = [&](std::string_view what) {
    const double v = static_cast<double>(std::invoke(eval, std::span<const bit_config>(cfg)));
    ++t.evaluations;
    if (!(std::isfinite(v)))
      detail::fail(errc::non_finite, "measure_sensitivity: eval",
                   "returned " + detail::format_number(v) + " for " + std::string(what));
    return v;
  };
  t.base_loss = call("the base configuration");
  t.loss_delta.assign(num_layers, std::vector<double>(candidates.size(), 0.0));
  for (std::size_t l = 0; l < num_layers; ++l) {
    for (std::size_t c = 0; c < candidates.size(); ++c) {
      if (candidates[c] == base) continue;
      cfg[l] = candidates[c];
      const std::string what = "layer " + std::to_string(l) + " at w" +
                               std::to_string(candidates[c].bits_w) + "a" +
                               std::to_string(candidates[c].bits_a);
      double d = call(what) - t.base_loss;
      if (d < 0.0) {
        if (policy == negative_delta::fail)
          detail::fail(errc::invalid_argument, "measure_sensitivity: eval",
                       "loss decreased by " + detail::format_number(-d) + " for " + what +
                           " (negative_delta::fail)");
        d = 0.0;
        ++t.clamped;
      }
      t.loss_delta[l][c] = d;
    }
    cfg[l] = base;
  }
  return t;
}

// Builds the allocation problem with resources {"size_bytes", "bops"} from a sensitivity table
// and the layers' sizes (one layer_dims per table row).
[[nodiscard]] inline bit_allocation_problem make_bit_allocation_problem(
    const sensitivity_table& table, std::span<const layer_dims> dims) {
  if (!(dims.size() == table.loss_delta.size()))
    detail::fail(errc::shape_mismatch, "make_bit_allocation_problem: dims",
                 "expected " + std::to_string(table.loss_delta.size()) +
                     " layers (one per table row), got " + std::to_string(dims.size()));
  bit_allocation_problem p;
  p.resource_names = {"size_bytes", "bops"};
  for (std::size_t l = 0; l < dims.size(); ++l) {
    bit_allocation_layer layer;
    layer.name = dims[l].name.empty() ? "layer" + std::to_string(l) : dims[l].name;
    if (!(table.loss_delta[l].size() == table.candidates.size()))
      detail::fail(errc::shape_mismatch,
                   "make_bit_allocation_problem: table.loss_delta[" + std::to_string(l) + "]",
                   "expected " + std::to_string(table.candidates.size()) + " entries");
    for (std::size_t c = 0; c < table.candidates.size(); ++c) {
      const bit_config b = table.candidates[c];
      bit_option o;
      o.bits = b;
      o.loss_delta = table.loss_delta[l][c];
      const double params = static_cast<double>(dims[l].params);
      const double macs = static_cast<double>(dims[l].macs);
      o.resources = {std::ceil(params * b.bits_w / 8.0), macs * b.bits_w * b.bits_a};
      layer.options.push_back(std::move(o));
    }
    p.layers.push_back(std::move(layer));
  }
  validate(p, "make_bit_allocation_problem");
  return p;
}

}  // namespace adaquant
