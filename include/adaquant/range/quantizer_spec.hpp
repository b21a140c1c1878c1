#pragma once
// quantizer_spec: what a quantizer is, at run time, in one place.
//
//   scheme     the integer grid (quant/scheme.hpp): bits, signed or not, symmetric or affine,
//              narrow range
//   gran       one parameter set for the tensor, one per index along an axis, or one per block
//              of consecutive indices along an axis (granularity, quant/scheme.hpp)
//   rounding   how a real value reaches the grid (quant/rounding.hpp): to_grid(x) =
//              nearbyint(x * (1/s)) (pytorch), nearbyint(x / s) (onnx) or round-half-away
//   range      how the clipping range, and from it scale and zero point, is estimated from data
//              (range/estimator.hpp), with that method's `settings`
//
// q = clamp(to_grid(x) + zero_point, qmin, qmax), x_hat = (q - zero_point) * scale.
// The pipelines take one spec for the weights and one for the activations; AdaQuant starts from
// the parameters the spec estimates and then learns them. A compile-time policy
// (quant/quantizer.hpp, QuantizerPolicy) converts with quantizer_spec::of<Q>().

#include <adaquant/core/error.hpp>
#include <adaquant/quant/quantizer.hpp>
#include <adaquant/range/estimator.hpp>

#include <string>
#include <type_traits>
#include <variant>

namespace adaquant {

struct quantizer_spec {
  quant_scheme scheme{8, true, true, false};
  granularity gran{};
  rounding_mode rounding = rounding_mode::pytorch;
  range_method range = range_method::mse;
  range_settings settings{};

  // Weights: per output channel (axis 0), symmetric signed, MSE-optimal clipping.
  [[nodiscard]] static quantizer_spec weights(int bits) {
    return {{bits, true, true, false}, granularity::per_channel(0)};
  }
  // Weights [out, in] per block of `block_size` inputs of each output channel (blocks along axis
  // 1: granularity::per_block(1, block_size)), symmetric signed, MSE-optimal clipping.
  [[nodiscard]] static quantizer_spec weights_per_block(int bits, std::size_t block_size) {
    return {{bits, true, true, false}, granularity::per_block(1, block_size)};
  }
  // Activations: per tensor, affine unsigned (signed inputs are covered by the zero point),
  // MSE-optimal clipping.
  [[nodiscard]] static quantizer_spec activations(int bits) {
    return {{bits, false, false, false}, granularity::per_tensor()};
  }
  // The spec of a compile-time policy (fixed_quantizer<...> or a user's own QuantizerPolicy).
  template <QuantizerPolicy Q>
  [[nodiscard]] static constexpr quantizer_spec of(granularity g = {},
                                                   range_method method = range_method::mse) {
    return {Q::scheme, g, rounding_mode_of<typename Q::rounding>(), method, {}};
  }

  [[nodiscard]] quantizer_spec with_bits(int bits) const {
    quantizer_spec s = *this;
    s.scheme.bits = bits;
    return s;
  }
  // The estimator options this spec implies; on_zero decides what an all-zero tensor gives.
  [[nodiscard]] estimate_options estimate(zero_range on_zero = zero_range::reject) const {
    estimate_options o;
    static_cast<range_settings&>(o) = settings;
    o.rounding = rounding;
    o.on_zero = on_zero;
    return o;
  }
  // Throws errc::invalid_argument naming `where` for bits outside [2, 16] or a block size of 0.
  void validate(const std::string& where) const {
    scheme.validate((where + ".scheme.bits").c_str());
    gran.validate((where + ".gran.block_size").c_str());
  }
};

// The parameters a spec gives for x: quant_params per tensor, channel_params per channel,
// block_params per block.
template <FloatTensor T>
[[nodiscard]] std::variant<quant_params, channel_params, block_params> estimate_params(
    const T& x, const quantizer_spec& spec, zero_range on_zero = zero_range::reject) {
  return estimate_params(x, spec.scheme, spec.gran, spec.range, spec.estimate(on_zero));
}

namespace detail {
// errc::invalid_argument naming `where` unless g is of kind `want`; the message names the
// estimate_*_params function that takes g's kind.
inline void require_granularity(const granularity& g, granularity::kind want, const char* where) {
  if (g.type == want) return;
  fail(errc::invalid_argument, where,
       g.type == granularity::kind::per_tensor    ? "is per tensor; use estimate_tensor_params"
       : g.type == granularity::kind::per_channel ? "is per channel; use estimate_channel_params"
                                                  : "is per block; use estimate_block_params");
}
}  // namespace detail

// Per-tensor parameters of a per-tensor spec (errc::invalid_argument for a per-channel one).
template <FloatTensor T>
[[nodiscard]] quant_params estimate_tensor_params(const T& x, const quantizer_spec& spec,
                                                  zero_range on_zero = zero_range::reject) {
  detail::require_granularity(spec.gran, granularity::kind::per_tensor,
                              "estimate_tensor_params: spec.gran");
  return estimate_tensor_params(x, spec.scheme, spec.range, spec.estimate(on_zero));
}

// Per-channel parameters of a per-channel spec (errc::invalid_argument for a per-tensor one).
template <FloatTensor T>
[[nodiscard]] channel_params estimate_channel_params(const T& x, const quantizer_spec& spec,
                                                     zero_range on_zero = zero_range::reject) {
  detail::require_granularity(spec.gran, granularity::kind::per_channel,
                              "estimate_channel_params: spec.gran");
  return estimate_channel_params(x, spec.scheme, spec.gran.axis, spec.range,
                                 spec.estimate(on_zero));
}

// Per-block parameters of a per-block spec (errc::invalid_argument for any other).
template <FloatTensor T>
[[nodiscard]] block_params estimate_block_params(const T& x, const quantizer_spec& spec,
                                                 zero_range on_zero = zero_range::reject) {
  detail::require_granularity(spec.gran, granularity::kind::per_block,
                              "estimate_block_params: spec.gran");
  spec.gran.validate("estimate_block_params: spec.gran.block_size");
  return estimate_block_params(x, spec.scheme, spec.gran.axis, spec.gran.block_size, spec.range,
                               spec.estimate(on_zero));
}

}  // namespace adaquant
