#pragma once
// Fake quantization (quantize then dequantize, staying in float), per tensor, per channel and per
// block (granularity::per_block, quant/scheme.hpp), with an optional straight-through-estimator
// mask:
//
//   q = clamp(to_grid(x) + z, qmin, qmax)     y = (q - z) * s     mask = (qmin <= to_grid(x) + z <=
//   qmax)
//
// to_grid is the rounding policy R (quant/rounding.hpp; default round_pytorch, which matches
// torch.fake_quantize_per_tensor_affine / _per_channel_affine bit for bit). The mask is what
// PyTorch's cachemask variants return: the STE gradient dy/dx is mask (1 inside the clamp range,
// 0 outside). +-inf saturate to the ends of the range (mask 0); NaN gives NaN (mask 0).
// In-place use (x and y the same buffer) is allowed.
//
// Each entry point has a scalar twin *_ref with the same signature and the same results bit for
// bit (the SIMD version processes full vectors, the twin the tail).
//
// Errors (adaquant::error): invalid params (scale <= 0, non-finite, qmin >= qmax, zero point
// outside the grid), output shape != input shape, mask size neither 0 nor the input size;
// per channel: axis >= rank, parameter count != extent of the axis; per block: axis >= rank,
// block_size 0, parameter count != the tensor's blocks.

#include <adaquant/core/concepts.hpp>
#include <adaquant/kernels/reference.hpp>
#include <adaquant/kernels/simd/fake_quant.hpp>
#include <adaquant/kernels/validate.hpp>

namespace adaquant {
namespace detail {
template <bool Simd, RoundingPolicy R>
void fake_quant_per_tensor_impl(tensor_view<const float> x, tensor_view<float> y,
                                const quant_params& p, std::span<std::uint8_t> mask) {
  constexpr const char* fn = "fake_quant_per_tensor";
  p.validate(arg(fn, "params").c_str());
  check_same_shape(x, y, fn);
  check_mask(mask, x.size(), fn);
  std::uint8_t* m = mask.empty() ? nullptr : mask.data();
  if constexpr (Simd)
    simd::fake_quant_per_tensor<R>(x.data(), y.data(), m, x.size(), p);
  else
    fake_quant_per_tensor_ref<R>(x.data(), y.data(), m, x.size(), p);
}

template <bool Simd, RoundingPolicy R>
void fake_quant_per_channel_impl(tensor_view<const float> x, tensor_view<float> y,
                                 const channel_params& p, std::span<std::uint8_t> mask) {
  constexpr const char* fn = "fake_quant_per_channel";
  const channel_layout l = check_channels(x.shape(), p, fn);
  check_same_shape(x, y, fn);
  check_mask(mask, x.size(), fn);
  std::uint8_t* m = mask.empty() ? nullptr : mask.data();
  if constexpr (Simd)
    simd::fake_quant_per_channel<R>(x.data(), y.data(), m, l, p.scale.data(), p.zero_point.data(),
                                    p.qmin, p.qmax);
  else
    fake_quant_per_channel_ref<R>(x.data(), y.data(), m, l, p.scale.data(), p.zero_point.data(),
                                  p.qmin, p.qmax);
}

template <bool Simd, RoundingPolicy R>
void fake_quant_per_block_impl(tensor_view<const float> x, tensor_view<float> y,
                               const block_params& p, std::span<std::uint8_t> mask) {
  constexpr const char* fn = "fake_quant_per_block";
  const block_layout l = check_blocks(x.shape(), p, fn);
  check_same_shape(x, y, fn);
  check_mask(mask, x.size(), fn);
  std::uint8_t* m = mask.empty() ? nullptr : mask.data();
  if constexpr (Simd)
    simd::fake_quant_per_block<R>(x.data(), y.data(), m, l, p.scale.data(), p.zero_point.data(),
                                  p.qmin, p.qmax);
  else
    fake_quant_per_block_ref<R>(x.data(), y.data(), m, l, p.scale.data(), p.zero_point.data(),
                                p.qmin, p.qmax);
}
}  // namespace detail

template <RoundingPolicy R = round_pytorch>
void fake_quant_per_tensor(const FloatTensor auto& x, MutableFloatTensor auto&& y,
                           const quant_params& p, std::span<std::uint8_t> ste_mask = {}) {
  detail::fake_quant_per_tensor_impl<true, R>(view(x), mutable_view(y), p, ste_mask);
}

template <RoundingPolicy R = round_pytorch>
void fake_quant_per_tensor_ref(const FloatTensor auto& x, MutableFloatTensor auto&& y,
                               const quant_params& p, std::span<std::uint8_t> ste_mask = {}) {
  detail::fake_quant_per_tensor_impl<false, R>(view(x), mutable_view(y), p, ste_mask);
}

template <RoundingPolicy R = round_pytorch>
void fake_quant_per_channel(const FloatTensor auto& x, MutableFloatTensor auto&& y,
                            const channel_params& p, std::span<std::uint8_t> ste_mask = {}) {
  detail::fake_quant_per_channel_impl<true, R>(view(x), mutable_view(y), p, ste_mask);
}

template <RoundingPolicy R = round_pytorch>
void fake_quant_per_channel_ref(const FloatTensor auto& x, MutableFloatTensor auto&& y,
                                const channel_params& p, std::span<std::uint8_t> ste_mask = {}) {
  detail::fake_quant_per_channel_impl<false, R>(view(x), mutable_view(y), p, ste_mask);
}

template <RoundingPolicy R = round_pytorch>
void fake_quant_per_block(const FloatTensor auto& x, MutableFloatTensor auto&& y,
                          const block_params& p, std::span<std::uint8_t> ste_mask = {}) {
  detail::fake_quant_per_block_impl<true, R>(view(x), mutable_view(y), p, ste_mask);
}

template <RoundingPolicy R = round_pytorch>
void fake_quant_per_block_ref(const FloatTensor auto& x, MutableFloatTensor auto&& y,
                              const block_params& p, std::span<std::uint8_t> ste_mask = {}) {
  detail::fake_quant_per_block_impl<false, R>(view(x), mutable_view(y), p, ste_mask);
}

// fake_quant(x, y, params): per tensor, per channel or per block by the type of params.
template <RoundingPolicy R = round_pytorch>
void fake_quant(const FloatTensor auto& x, MutableFloatTensor auto&& y, const quant_params& p,
                std::span<std::uint8_t> ste_mask = {}) {
  fake_quant_per_tensor<R>(x, y, p, ste_mask);
}
template <RoundingPolicy R = round_pytorch>
void fake_quant(const FloatTensor auto& x, MutableFloatTensor auto&& y, const channel_params& p,
                std::span<std::uint8_t> ste_mask = {}) {
  fake_quant_per_channel<R>(x, y, p, ste_mask);
}

template <RoundingPolicy R = round_pytorch>
void fake_quant(const FloatTensor auto& x, MutableFloatTensor auto&& y, const block_params& p,
                std::span<std::uint8_t> ste_mask = {}) {
  fake_quant_per_block<R>(x, y, p, ste_mask);
}

}  // namespace adaquant
