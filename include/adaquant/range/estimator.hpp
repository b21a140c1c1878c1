#pragma once
// Run-time choice of a range estimator: one call from a tensor to quantization parameters.
//
//   estimate_params(x, scheme, granularity, method, options)
//       -> std::variant<quant_params, channel_params, block_params>  (per tensor/channel/block)
//   estimate_tensor_params / estimate_channel_params / estimate_block_params: the same with a
//   fixed return type.
//
// method          range                                             cost (n elements)
//   min_max       exact [min, max] (min_max.hpp)                    O(n)
//   percentile    histogram percentile, options.percentile;        O(n + bins) (per channel
//                 symmetric clipping for symmetric schemes           O(n + channels * bins);
//                 (percentile.hpp; per block: exact order statistics per block O(n log block))
//   mse           Lp-optimal clipping on the data with the rounding O(n * (candidates +
//                 policy options.rounding (mse_search.hpp)           refine_iterations))
// then params_from_range (quant/quant_params.hpp). options.on_zero decides what an all-zero
// tensor, channel or block gives (reject: errc::invalid_argument from params_from_range).
// Errors: as each estimator (empty, non-finite with the offset, axis, options).

#include <adaquant/quant/rounding.hpp>
#include <adaquant/quant/scheme.hpp>
#include <adaquant/range/min_max.hpp>
#include <adaquant/range/mse_search.hpp>
#include <adaquant/range/percentile.hpp>
#include <adaquant/range/range.hpp>

#include <string>
#include <string_view>
#include <variant>

namespace adaquant {

enum class range_method { min_max, percentile, mse };

[[nodiscard]] constexpr std::string_view to_string(range_method m) noexcept {
  switch (m) {
    case range_method::min_max:
      return "min_max";
    case range_method::percentile:
      return "percentile";
    case range_method::mse:
      return "mse";
  }
  return "unknown";
}

// "min_max", "percentile" or "mse" (for configuration files).
[[nodiscard]] inline range_method parse_range_method(std::string_view s) {
  for (auto m : {range_method::min_max, range_method::percentile, range_method::mse})
    if (s == to_string(m)) return m;
  detail::fail(
      errc::invalid_argument, "parse_range_method: s",
      "unknown range method \"" + std::string(s) + "\" (expected min_max, percentile or mse)");
}

// The parameters of the range methods (what a quantizer_spec carries beside its method).
struct range_settings {
  double percentile = 99.99;       // method percentile
  percentile_options histogram{};  // method percentile: bins
  mse_options mse{};               // method mse (its on_zero is ignored)
};

// Everything an estimator call needs: the method's settings plus the rounding policy the MSE
// search measures its error with and what an all-zero tensor or channel gives.
struct estimate_options : range_settings {
  rounding_mode rounding = rounding_mode::pytorch;  // method mse: the policy E is measured with
  zero_range on_zero = zero_range::reject;          // all-zero tensor or channel
};

// The clipping range of x (per tensor) for `method`.
template <FloatTensor T>
[[nodiscard]] range estimate_range(const T& x, const quant_scheme& scheme, range_method method,
                                   const estimate_options& options = {}) {
  scheme.validate("estimate_range: scheme.bits");
  switch (method) {
    case range_method::percentile:
      return percentile_range(x, options.percentile,
                              scheme.symmetric ? clipping::symmetric : clipping::asymmetric,
                              options.histogram);
    case range_method::mse: {
      mse_options o = options.mse;
      o.on_zero = zero_range::use_epsilon;  // the range is wanted, not params
      return with_rounding(options.rounding,
                           [&](auto r) { return mse_search<decltype(r)>(x, scheme, o).clip; });
    }
    case range_method::min_max:
      break;
  }
  return min_max(x);
}

// Per-channel clipping ranges along `axis`.
template <FloatTensor T>
[[nodiscard]] channel_ranges estimate_channel_ranges(const T& x, const quant_scheme& scheme,
                                                     std::size_t axis, range_method method,
                                                     const estimate_options& options = {}) {
  scheme.validate("estimate_channel_ranges: scheme.bits");
  switch (method) {
    case range_method::percentile:
      return percentile_range_per_channel(
          x, axis, options.percentile,
          scheme.symmetric ? clipping::symmetric : clipping::asymmetric, options.histogram);
    case range_method::mse: {
      mse_options o = options.mse;
      o.on_zero = zero_range::use_epsilon;
      return with_rounding(options.rounding, [&](auto r) {
        return mse_search_per_channel<decltype(r)>(x, axis, scheme, o).clip;
      });
    }
    case range_method::min_max:
      break;
  }
  return min_max_per_channel(x, axis);
}

// Per-block clipping ranges: blocks of block_size indices along `axis`.
template <FloatTensor T>
[[nodiscard]] block_ranges estimate_block_ranges(const T& x, const quant_scheme& scheme,
                                                 std::size_t axis, std::size_t block_size,
                                                 range_method method,
                                                 const estimate_options& options = {}) {
  scheme.validate("estimate_block_ranges: scheme.bits");
  switch (method) {
    case range_method::percentile:
      return percentile_range_per_block(
          x, axis, block_size, options.percentile,
          scheme.symmetric ? clipping::symmetric : clipping::asymmetric);
    case range_method::mse: {
      mse_options o = options.mse;
      o.on_zero = zero_range::use_epsilon;
      return with_rounding(options.rounding, [&](auto r) {
        return mse_search_per_block<decltype(r)>(x, axis, block_size, scheme, o).clip;
      });
    }
    case range_method::min_max:
      break;
  }
  return min_max_per_block(x, axis, block_size);
}

template <FloatTensor T>
[[nodiscard]] quant_params estimate_tensor_params(const T& x, const quant_scheme& scheme,
                                                  range_method method,
                                                  const estimate_options& options = {}) {
  return params_for(scheme, estimate_range(x, scheme, method, options), options.on_zero);
}

template <FloatTensor T>
[[nodiscard]] channel_params estimate_channel_params(const T& x, const quant_scheme& scheme,
                                                     std::size_t axis, range_method method,
                                                     const estimate_options& options = {}) {
  return params_for(scheme, estimate_channel_ranges(x, scheme, axis, method, options),
                    options.on_zero);
}

template <FloatTensor T>
[[nodiscard]] block_params estimate_block_params(const T& x, const quant_scheme& scheme,
                                                 std::size_t axis, std::size_t block_size,
                                                 range_method method,
                                                 const estimate_options& options = {}) {
  return params_for(scheme, estimate_block_ranges(x, scheme, axis, block_size, method, options),
                    options.on_zero);
}

template <FloatTensor T>
[[nodiscard]] std::variant<quant_params, channel_params, block_params> estimate_params(
    const T& x, const quant_scheme& scheme, const granularity& gran, range_method method,
    const estimate_options& options = {}) {
  gran.validate("estimate_params: gran.block_size");
  if (gran.type == granularity::kind::per_channel)
    return estimate_channel_params(x, scheme, gran.axis, method, options);
  if (gran.type == granularity::kind::per_block)
    return estimate_block_params(x, scheme, gran.axis, gran.block_size, method, options);
  return estimate_tensor_params(x, scheme, method, options);
}

}  // namespace adaquant
