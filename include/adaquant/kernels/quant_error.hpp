#pragma once
// Quantization error of a tensor under given parameters, the objective of MSE clipping
// (range/mse_search.hpp):
//
//   quant_error(x, q, p) = 1/n * sum_i |fq(x_i) - x_i|^p
//
// fq is fake_quant with rounding policy R (kernels/reference.hpp). The sum runs in double in a
// fixed order (kernels/reference_range.hpp), so quant_error and its scalar twin quant_error_ref
// agree bit for bit: squared float differences are exact in double, and both add 2 * lanes
// partial sums in the same order. Complexity O(n), no allocation.
// Errors (adaquant::error): invalid q, p outside (0, 16], empty or non-finite x.

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

inline void check_error_args(tensor_view<const float> x, const quant_params& q, double p,
                             const std::string& fn) {
  q.validate((fn + ": q").c_str());
  if (!(p > 0.0 && p <= 16.0))
    fail(errc::invalid_argument, fn + ": p", "must be in (0, 16], got " + std::to_string(p));
  check_not_empty(x.size(), fn + ": x");
  check_finite(x.data(), x.size(), fn + ": x");
}

template <bool Simd, RoundingPolicy R>
double quant_error_impl(tensor_view<const float> x, const quant_params& q, double p,
                        const char* fn) {
  check_error_args(x, q, p, fn);
  return quant_error_run<Simd, R>(x.data(), x.size(), q, p) / static_cast<double>(x.size());
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

}  // namespace adaquant
