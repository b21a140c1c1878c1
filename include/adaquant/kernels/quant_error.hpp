#pragma once
// Quantization error of a tensor under given parameters, the objective of MSE clipping
// (range/mse_search.hpp):
//
//   quant_error(x, q, p) = 1/n * sum_i |fq(x_i) - x_i|^p
//
// fq is fake_quant with rounding policy R (kernels/reference.hpp), per tensor (q: quant_params)
// or per block (q: block_params, each element with its block's parameters; the blocks' sums are
// added in the order of q.scale, and a block whose elements are not contiguous, inner > 1 in
// block_layout, is summed element by element in memory order). The sum runs in double in a
// fixed order (kernels/reference_range.hpp), so quant_error and its scalar twin quant_error_ref
// agree bit for bit: squared float differences are exact in double, and both add 2 * lanes
// partial sums in the same order. Complexity O(n), no allocation.
// Errors (adaquant::error): invalid q, p outside (0, 16], empty or non-finite x; per block also
// those of fake_quant_per_block's parameters.

#include <adaquant/core/concepts.hpp>
#include <adaquant/kernels/reference_range.hpp>
#include <adaquant/kernels/simd/quant_error.hpp>
#include <adaquant/kernels/validate.hpp>

#include <string>

namespace adaquant {
namespace detail {

// The unnormalised sum: the SIMD body or its scalar twin.
template <bool Simd, RoundingPolicy R>
double quant_error_run(const float* x, std::size_t n, const quant_params& q, double p) noexcept {
  if constexpr (Simd)
    return simd::quant_error<R>(x, n, q, p);
  else
    return quant_error_ref<R>(x, n, q, p);
}

inline void check_error_args(tensor_view<const float> x, double p, const std::string& fn) {
  if (!(p > 0.0 && p <= 16.0))
    fail(errc::invalid_argument, fn + ": p", "must be in (0, 16], got " + std::to_string(p));
  check_not_empty(x.size(), fn + ": x");
  check_finite(x.data(), x.size(), fn + ": x");
}

template <bool Simd, RoundingPolicy R>
double quant_error_impl(tensor_view<const float> x, const quant_params& q, double p,
                        const char* fn) {
  q.validate((std::string(fn) + ": q").c_str());
  check_error_args(x, p, fn);
  return quant_error_run<Simd, R>(x.data(), x.size(), q, p) / static_cast<double>(x.size());
}

template <bool Simd, RoundingPolicy R>
double quant_error_per_block_impl(tensor_view<const float> x, const block_params& q, double p,
                                  const char* fn) {
  const block_layout l = check_blocks(x.shape(), q, fn, "q");
  check_error_args(x, p, fn);
  double total = 0.0;
  l.for_each_chunk([&](std::size_t o, const channel_layout& c, std::size_t first) {
    for (std::size_t r = 0; r < c.outer; ++r)
      for (std::size_t k = 0; k < c.channels; ++k)
        total += quant_error_run<Simd, R>(x.data() + o + (r * c.channels + k) * c.inner, c.inner,
                                          q.block(first + k), p);
  });
  return total / static_cast<double>(x.size());
}
}  // namespace detail

template <RoundingPolicy R = round_pytorch>
[[nodiscard]] double quant_error(const FloatTensor auto& x, const quant_params& q, double p = 2.0) {
  return detail::quant_error_impl<true, R>(view(x), q, p, "quant_error");
}
template <RoundingPolicy R = round_pytorch>
[[nodiscard]] double quant_error_ref(const FloatTensor auto& x, const quant_params& q,
                                     double p = 2.0) {
  return detail::quant_error_impl<false, R>(view(x), q, p, "quant_error_ref");
}

template <RoundingPolicy R = round_pytorch>
[[nodiscard]] double quant_error(const FloatTensor auto& x, const block_params& q, double p = 2.0) {
  return detail::quant_error_per_block_impl<true, R>(view(x), q, p, "quant_error");
}
template <RoundingPolicy R = round_pytorch>
[[nodiscard]] double quant_error_ref(const FloatTensor auto& x, const block_params& q,
                                     double p = 2.0) {
  return detail::quant_error_per_block_impl<false, R>(view(x), q, p, "quant_error_ref");
}

}  // namespace adaquant
