#pragma once
// Quantize to integer storage and dequantize back, per tensor, per channel and per block (each
// block's chunk through the per-channel kernel, block_layout::for_each_chunk).
//
//   quantize:   q = clamp(to_grid(x) + z, qmin, qmax)   (rounding policy R, quant/rounding.hpp)
//   dequantize: x_hat = (q - z) * s
//
// Output integer types: int8/uint8/int16/uint16/int32, whichever holds [qmin, qmax]; int4 packs
// two values per byte (quant/int4.hpp). +-inf saturate to qmax/qmin. NaN cannot be represented:
// quantize throws errc::non_finite after the pass (the output's contents are then unspecified).
// Other errors as in kernels/fake_quant.hpp, plus a grid that does not fit the output type.
// Every entry point has a scalar twin *_ref, equal bit for bit.

#include <adaquant/core/concepts.hpp>
#include <adaquant/kernels/reference.hpp>
#include <adaquant/kernels/simd/quantize.hpp>
#include <adaquant/kernels/validate.hpp>
#include <adaquant/quant/int4.hpp>

#include <vector>

namespace adaquant {
namespace detail {
inline void throw_nan(const char* fn) {
  fail(errc::non_finite, arg(fn, "input"), "NaN cannot be quantized to an integer");
}

template <bool Simd, RoundingPolicy R, class Int>
void quantize_per_tensor_impl(tensor_view<const float> x, tensor_view<Int> q,
                              const quant_params& p) {
  constexpr const char* fn = "quantize_per_tensor";
  p.validate(arg(fn, "params").c_str());
  check_storage<Int>(p.qmin, p.qmax, fn);
  check_same_shape(x, q, fn);
  const bool nan = Simd ? simd::quantize_block<R>(x.data(), q.data(), x.size(), p)
                        : quantize_per_tensor_ref<R>(x.data(), q.data(), x.size(), p);
  if (nan) throw_nan(fn);
}

template <bool Simd, RoundingPolicy R, class Int>
void quantize_per_channel_impl(tensor_view<const float> x, tensor_view<Int> q,
                               const channel_params& p) {
  constexpr const char* fn = "quantize_per_channel";
  const channel_layout l = check_channels(x.shape(), p, fn);
  check_storage<Int>(p.qmin, p.qmax, fn);
  check_same_shape(x, q, fn);
  const bool nan = Simd ? simd::quantize_per_channel<R>(x.data(), q.data(), l, p.scale.data(),
                                                        p.zero_point.data(), p.qmin, p.qmax)
                        : quantize_per_channel_ref<R>(x.data(), q.data(), l, p.scale.data(),
                                                      p.zero_point.data(), p.qmin, p.qmax);
  if (nan) throw_nan(fn);
}

template <bool Simd, class Int>
void dequantize_per_tensor_impl(tensor_view<const Int> q, tensor_view<float> y,
                                const quant_params& p) {
  constexpr const char* fn = "dequantize_per_tensor";
  p.validate(arg(fn, "params").c_str());
  check_same_shape(q, y, fn);
  if constexpr (Simd)
    simd::dequantize_block(q.data(), y.data(), q.size(), p);
  else
    dequantize_per_tensor_ref(q.data(), y.data(), q.size(), p);
}

template <bool Simd, class Int>
void dequantize_per_channel_impl(tensor_view<const Int> q, tensor_view<float> y,
                                 const channel_params& p) {
  constexpr const char* fn = "dequantize_per_channel";
  const channel_layout l = check_channels(q.shape(), p, fn);
  check_same_shape(q, y, fn);
  if constexpr (Simd)
    simd::dequantize_per_channel(q.data(), y.data(), l, p.scale.data(), p.zero_point.data());
  else
    dequantize_per_channel_ref(q.data(), y.data(), l, p.scale.data(), p.zero_point.data());
}

template <bool Simd, RoundingPolicy R, class Int>
void quantize_per_block_impl(tensor_view<const float> x, tensor_view<Int> q,
                             const block_params& p) {
  constexpr const char* fn = "quantize_per_block";
  const block_layout l = check_blocks(x.shape(), p, fn);
  check_storage<Int>(p.qmin, p.qmax, fn);
  check_same_shape(x, q, fn);
  bool nan = false;
  l.for_each_chunk([&](std::size_t o, const channel_layout& c, std::size_t first) {
    const float* s = p.scale.data() + first;
    const std::int32_t* z = p.zero_point.data() + first;
    nan |= Simd ? simd::quantize_per_channel<R>(x.data() + o, q.data() + o, c, s, z, p.qmin, p.qmax)
                : quantize_per_channel_ref<R>(x.data() + o, q.data() + o, c, s, z, p.qmin, p.qmax);
  });
  if (nan) throw_nan(fn);
}

template <bool Simd, class Int>
void dequantize_per_block_impl(tensor_view<const Int> q, tensor_view<float> y,
                               const block_params& p) {
  constexpr const char* fn = "dequantize_per_block";
  const block_layout l = check_blocks(q.shape(), p, fn);
  check_same_shape(q, y, fn);
  l.for_each_chunk([&](std::size_t o, const channel_layout& c, std::size_t first) {
    const float* s = p.scale.data() + first;
    const std::int32_t* z = p.zero_point.data() + first;
    if constexpr (Simd)
      simd::dequantize_per_channel(q.data() + o, y.data() + o, c, s, z);
    else
      dequantize_per_channel_ref(q.data() + o, y.data() + o, c, s, z);
  });
}

template <class T>
concept QuantStorage = std::same_as<T, std::int8_t> || std::same_as<T, std::uint8_t> ||
    std::same_as<T, std::int16_t> || std::same_as<T, std::uint16_t> ||
    std::same_as<T, std::int32_t>;
}  // namespace detail

template <class T>
concept IntegerTensor = DenseTensor<T> && detail::QuantStorage<tensor_value_t<T>>;
template <class T>
concept MutableIntegerTensor = MutableDenseTensor<T> && IntegerTensor<T>;

template <RoundingPolicy R = round_pytorch>
void quantize_per_tensor(const FloatTensor auto& x, MutableIntegerTensor auto&& q,
                         const quant_params& p) {
  detail::quantize_per_tensor_impl<true, R>(view(x), mutable_view(q), p);
}
template <RoundingPolicy R = round_pytorch>
void quantize_per_tensor_ref(const FloatTensor auto& x, MutableIntegerTensor auto&& q,
                             const quant_params& p) {
  detail::quantize_per_tensor_impl<false, R>(view(x), mutable_view(q), p);
}
template <RoundingPolicy R = round_pytorch>
void quantize_per_channel(const FloatTensor auto& x, MutableIntegerTensor auto&& q,
                          const channel_params& p) {
  detail::quantize_per_channel_impl<true, R>(view(x), mutable_view(q), p);
}
template <RoundingPolicy R = round_pytorch>
void quantize_per_channel_ref(const FloatTensor auto& x, MutableIntegerTensor auto&& q,
                              const channel_params& p) {
  detail::quantize_per_channel_impl<false, R>(view(x), mutable_view(q), p);
}

void dequantize_per_tensor(const IntegerTensor auto& q, MutableFloatTensor auto&& y,
                           const quant_params& p) {
  detail::dequantize_per_tensor_impl<true>(view(q), mutable_view(y), p);
}
void dequantize_per_tensor_ref(const IntegerTensor auto& q, MutableFloatTensor auto&& y,
                               const quant_params& p) {
  detail::dequantize_per_tensor_impl<false>(view(q), mutable_view(y), p);
}
void dequantize_per_channel(const IntegerTensor auto& q, MutableFloatTensor auto&& y,
                            const channel_params& p) {
  detail::dequantize_per_channel_impl<true>(view(q), mutable_view(y), p);
}
void dequantize_per_channel_ref(const IntegerTensor auto& q, MutableFloatTensor auto&& y,
                                const channel_params& p) {
  detail::dequantize_per_channel_impl<false>(view(q), mutable_view(y), p);
}

template <RoundingPolicy R = round_pytorch>
void quantize_per_block(const FloatTensor auto& x, MutableIntegerTensor auto&& q,
                        const block_params& p) {
  detail::quantize_per_block_impl<true, R>(view(x), mutable_view(q), p);
}
template <RoundingPolicy R = round_pytorch>
void quantize_per_block_ref(const FloatTensor auto& x, MutableIntegerTensor auto&& q,
                            const block_params& p) {
  detail::quantize_per_block_impl<false, R>(view(x), mutable_view(q), p);
}
void dequantize_per_block(const IntegerTensor auto& q, MutableFloatTensor auto&& y,
                          const block_params& p) {
  detail::dequantize_per_block_impl<true>(view(q), mutable_view(y), p);
}
void dequantize_per_block_ref(const IntegerTensor auto& q, MutableFloatTensor auto&& y,
                              const block_params& p) {
  detail::dequantize_per_block_impl<false>(view(q), mutable_view(y), p);
}

// int4, packed two per byte: the grid must lie within [-8, 7] (signed) or [0, 15] (unsigned).
template <RoundingPolicy R = round_pytorch>
void quantize_int4_per_tensor(const FloatTensor auto& x, std::span<std::uint8_t> packed,
                              const quant_params& p) {
  const auto xv = view(x);
  if (!(p.qmin >= -8 && p.qmax <= 15 && (p.qmin >= 0 || p.qmax <= 7)))
    detail::fail(errc::invalid_argument, "quantize_int4_per_tensor: params",
                 "grid [" + std::to_string(p.qmin) + ", " + std::to_string(p.qmax) +
                     "] is not a 4-bit grid");
  if (!(packed.size() == int4_packed_size(xv.size())))
    detail::fail(errc::shape_mismatch, "quantize_int4_per_tensor: packed",
                 "needs " + std::to_string(int4_packed_size(xv.size())) + " bytes, got " +
                     std::to_string(packed.size()));
  std::vector<std::int8_t> q(xv.size());
  quantize_per_tensor<R>(xv, tensor_view<std::int8_t>(q.data(), xv.shape()), p);
  pack_int4(q, packed);
}

inline void dequantize_int4_per_tensor(std::span<const std::uint8_t> packed,
                                       MutableFloatTensor auto&& y, const quant_params& p) {
  const auto yv = mutable_view(y);
  std::vector<std::int8_t> q(yv.size());
  unpack_int4(packed, q, p.qmin < 0);
  dequantize_per_tensor(tensor_view<const std::int8_t>(q.data(), yv.shape()), yv, p);
}

}  // namespace adaquant
