#pragma once
// Rounding policies: how a real value x reaches the integer grid of scale s and zero point z.
// Every policy clamps after adding the zero point:
//
//   q = clamp(to_grid(x, s) + z, qmin, qmax)        x_hat = (q - z) * s
//
// round_pytorch   to_grid = nearbyint(x * (1.0f / s))   ties-to-even, the reciprocal computed in
//                 float32: torch.fake_quantize_per_{tensor,channel}_affine and quantize_per_tensor
//                 on CPU (PyTorch 1.13).
// round_onnx      to_grid = nearbyint(x / s)            ties-to-even, true division: ONNX
//                 QuantizeLinear. Differs from round_pytorch by one step where x/s is near a tie.
// round_half_away to_grid = round(x * (1.0f / s))       ties away from zero (ncnn's float2int8).
//
// +-inf saturate to qmax/qmin (PyTorch 1.13 casts nearbyint(+inf) to int64, which is undefined).
// NaN stays NaN through to_grid and the clamp; see kernels/fake_quant.hpp for what each kernel
// does with it. The same formulas run in the scalar reference kernels, the SIMD kernels and in
// constant evaluation, so all three agree bit for bit.

#include <cmath>
#include <concepts>
#include <string_view>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace adaquant {
namespace detail {

// Ties-to-even without the floating-point environment, usable in constant evaluation.
constexpr float round_half_even_constexpr(float x) noexcept {
  constexpr float two23 = 8388608.0f;
  const float a = x < 0 ? -x : x;
  if (!(a < two23) || x == 0) return x;  // already integral, +-0, inf or NaN
  const float r = (a + two23) - two23;
  return x < 0 ? -r : r;
}

constexpr float round_half_even(float x) noexcept {
  if (std::is_constant_evaluated()) return round_half_even_constexpr(x);
  return std::nearbyint(x);
}

// Ties away from zero: the fractional part |x - trunc(x)| is exact in float.
constexpr float round_half_away(float x) noexcept {
  if (std::is_constant_evaluated()) {
    const float a = x < 0 ? -x : x;
    if (!(a < 8388608.0f)) return x;
    const float t = static_cast<float>(static_cast<long long>(a));
    const float r = (a - t) >= 0.5f ? t + 1.0f : t;
    return x < 0 ? -r : r;
  }
  const float t = std::trunc(x);
  return std::fabs(x - t) >= 0.5f ? t + std::copysign(1.0f, x) : t;
}

template <class B>
B round_half_away(const B& x) noexcept {
  const B t = xsimd::trunc(x);
  return xsimd::select(xsimd::abs(x - t) >= B(0.5f), t + xsimd::copysign(B(1.0f), x), t);
}

}  // namespace detail

struct round_pytorch {
  static constexpr std::string_view name = "pytorch";
  static constexpr float to_grid(float x, float /*scale*/, float inv_scale) noexcept {
    return detail::round_half_even(x * inv_scale);
  }
  template <class B>
  static B to_grid(const B& x, const B& /*scale*/, const B& inv_scale) noexcept {
    return xsimd::nearbyint(x * inv_scale);
  }
};

struct round_onnx {
  static constexpr std::string_view name = "onnx";
  static constexpr float to_grid(float x, float scale, float /*inv_scale*/) noexcept {
    return detail::round_half_even(x / scale);
  }
  template <class B>
  static B to_grid(const B& x, const B& scale, const B& /*inv_scale*/) noexcept {
    return xsimd::nearbyint(x / scale);
  }
};

struct round_half_away {
  static constexpr std::string_view name = "half_away";
  static constexpr float to_grid(float x, float /*scale*/, float inv_scale) noexcept {
    return detail::round_half_away(x * inv_scale);
  }
  template <class B>
  static B to_grid(const B& x, const B& /*scale*/, const B& inv_scale) noexcept {
    return detail::round_half_away(x * inv_scale);
  }
};

template <class R>
concept RoundingPolicy = requires(float x) {
  { R::name } -> std::convertible_to<std::string_view>;
  { R::to_grid(x, x, x) } -> std::same_as<float>;
  {
    R::to_grid(xsimd::batch<float>(x), xsimd::batch<float>(x), xsimd::batch<float>(x))
    } -> std::same_as<xsimd::batch<float>>;
};

// Run-time choice of a policy, e.g. from a configuration file.
enum class rounding_mode { pytorch, onnx, half_away };

// Calls f(R{}) with the policy type for `mode`.
template <class F>
decltype(auto) with_rounding(rounding_mode mode, F&& f) {
  switch (mode) {
    case rounding_mode::onnx:
      return f(round_onnx{});
    case rounding_mode::half_away:
      return f(round_half_away{});
    case rounding_mode::pytorch:
      break;
  }
  return f(round_pytorch{});
}

// The run-time mode of one of the library's policies (a user's own policy has none: it is used
// through the templates directly).
template <RoundingPolicy R>
[[nodiscard]] constexpr rounding_mode rounding_mode_of() noexcept {
  if constexpr (std::is_same_v<R, round_onnx>)
    return rounding_mode::onnx;
  else if constexpr (std::is_same_v<R, round_half_away>)
    return rounding_mode::half_away;
  else {
    static_assert(std::is_same_v<R, round_pytorch>, "no rounding_mode for this policy");
    return rounding_mode::pytorch;
  }
}

}  // namespace adaquant
