#pragma once
// MSE-optimal (Lp-optimal) clipping: the range alpha * [min, max] whose fake quantization loses
// the least, per tensor and per channel.
//
//   E(alpha) = 1/n * sum_i |fq(x_i; params_from_range(scheme, alpha * [lo, hi])) - x_i|^p
//
// [lo, hi] is the exact min/max (for symmetric schemes the range is [-alpha m, alpha m] with
// m = max|x|, which gives the same params); fq is fake_quant with rounding policy R
// (kernels/reference.hpp) and p = options.p (2 = MSE; 2.4 is used by some papers).
// Search: the grid alpha_k = k / candidates, k = candidates..1 (alpha = 1 is min/max, so the
// result never loses more than min/max), then `refine_iterations` golden-section steps on
// [alpha* - 1/candidates, alpha* + 1/candidates] around the best grid point; a refined alpha
// replaces the grid one only if its error is strictly smaller. E is not unimodal at the scale
// of one quantization step (rounding ripple), which is why the grid comes first.
// Tie-break: among equal errors the LARGER alpha wins (less clipping; clipping error is biased
// and compounds downstream, see FINDINGS.md), so all-equal errors return min/max.
//
// Two evaluators:
//   on the data  mse_search(x, scheme)            exact E; weights and cached activations.
//                O(n * (candidates + refine_iterations)); the error kernel is SIMD with a
//                scalar twin (quant_error / quant_error_ref, equal bit for bit: squared float
//                differences are exact in double, and both add 2 * lanes partial sums in the
//                same order).
//   on a histogram  mse_search(histogram, scheme)  for streaming activations: each bin's mass is
//                spread over `points_per_bin` evenly spaced points. O(bins * points_per_bin *
//                (candidates + refine_iterations)), independent of the data size; E is then
//                approximate (the histogram's bin width is the resolution).
// Per channel: each channel is searched independently on its own data (O(n) gather + the same
// cost summed over channels).
//
// Errors: as min_max (empty, non-finite, axis); options outside their domain
// (errc::invalid_argument naming the field); an all-zero tensor or channel follows
// options.on_zero through params_from_range (reject: errc::invalid_argument).

#include <adaquant/core/concepts.hpp>
#include <adaquant/kernels/reference.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>
#include <adaquant/range/min_max.hpp>
#include <adaquant/range/percentile.hpp>
#include <adaquant/range/range.hpp>

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

namespace adaquant {

struct mse_options {
  std::size_t candidates = 100;             // grid alpha_k = k / candidates, k = candidates..1
  int refine_iterations = 20;               // golden-section steps after the grid; 0 = grid only
  double p = 2.0;                           // error norm: mean |x_hat - x|^p, p in (0, 16]
  std::size_t points_per_bin = 8;           // histogram evaluator only
  zero_range on_zero = zero_range::reject;  // all-zero tensor (or channel)

  void validate(const char* fn) const {
    const std::string f(fn);
    if (!(candidates >= 1 && candidates <= 1'000'000))
      detail::fail(errc::invalid_argument, f + ": options.candidates",
                   "must be in [1, 1000000], got " + std::to_string(candidates));
    if (!(refine_iterations >= 0 && refine_iterations <= 200))
      detail::fail(errc::invalid_argument, f + ": options.refine_iterations",
                   "must be in [0, 200], got " + std::to_string(refine_iterations));
    if (!(p > 0.0 && p <= 16.0))
      detail::fail(errc::invalid_argument, f + ": options.p",
                   "must be in (0, 16], got " + std::to_string(p));
    if (!(points_per_bin >= 1 && points_per_bin <= 1024))
      detail::fail(errc::invalid_argument, f + ": options.points_per_bin",
                   "must be in [1, 1024], got " + std::to_string(points_per_bin));
  }
};

struct mse_result {
  range clip;                // the chosen range; params == params_for(scheme, clip)
  quant_params params;       // params_from_range(scheme, clip)
  float alpha = 1.0f;        // clip = alpha * min/max range
  double error = 0.0;        // E(alpha), mean |x_hat - x|^p
  double min_max_error = 0;  // E(1), the error of plain min/max
};

struct channel_mse_result {
  channel_ranges clip;
  channel_params params;
  std::vector<float> alpha;
  std::vector<double> error;
  std::vector<double> min_max_error;
};

namespace detail {

// |d|^p in double; d*d is exact for float d, so contraction into FMA cannot change it.
inline double error_term(float d, double p) noexcept {
  const double a = std::fabs(static_cast<double>(d));
  if (p == 2.0) return a * a;
  if (p == 1.0) return a;
  return std::pow(a, p);
}

// The error of one element, d = fake_quant(x) - x in float. The dequantized value is formed as
// y = clamp(t * s, (qmin - z) * s, (qmax - z) * s), t = to_grid(x): the same float as the
// kernels' (clamp(t + z) - z) * s (rounding is monotone), but the subtraction then consumes a
// min/max, never a product, so -mfma cannot fuse y - x into an FMA in one path and not another.
struct dequant_bounds {
  float ylo, yhi;  // (qmin - z) * s and (qmax - z) * s, as the kernels compute them
  explicit dequant_bounds(const quant_params& q) noexcept
      : ylo((static_cast<float>(q.qmin) - static_cast<float>(q.zero_point)) * q.scale),
        yhi((static_cast<float>(q.qmax) - static_cast<float>(q.zero_point)) * q.scale) {}
};

template <RoundingPolicy R>
float error_of(float x, float s, float inv, float ylo, float yhi) noexcept {
  float y = R::to_grid(x, s, inv) * s;
  y = y < ylo ? ylo : y;
  y = y > yhi ? yhi : y;
  return y - x;
}

// Number of partial sums of the error kernel: element i of the vector part
// [0, n - n % error_partials) goes to partial i % error_partials (two batches per step).
inline constexpr std::size_t error_partials = 2 * simd::lanes;

// Scalar twin of the error kernel: returns sum_i |fq(x_i) - x_i|^p. The partial sums are added
// in index order, then the tail in order: the SIMD kernel sums in exactly this order.
template <RoundingPolicy R>
double quant_error_ref(const float* x, std::size_t n, const quant_params& q, double p) noexcept {
  constexpr std::size_t parts = error_partials;
  const float s = q.scale, inv = q.inv_scale();
  const auto [ylo, yhi] = dequant_bounds(q);
  double acc[parts] = {};
  const std::size_t vn = n - n % parts;
  for (std::size_t i = 0; i < vn; ++i)
    acc[i % parts] += error_term(error_of<R>(x[i], s, inv, ylo, yhi), p);
  double total = 0.0;
  for (std::size_t j = 0; j < parts; ++j) total += acc[j];
  for (std::size_t i = vn; i < n; ++i) total += error_term(error_of<R>(x[i], s, inv, ylo, yhi), p);
  return total;
}

namespace simd {
using dbatch = xsimd::batch<double>;
static_assert(2 * dbatch::size == lanes, "float and double batches of the same width");

// Lanes [0, lanes/2) and [lanes/2, lanes) of v, converted to double (exact).
// A template in both types so that the branches for other ISAs are never checked.
template <class F, class D>
void widen(const F& v, D& lo, D& hi) noexcept {
  using reg = typename F::register_type;
#if defined(__AVX512F__)
  if constexpr (sizeof(reg) == 64 && F::size == 16) {
    const __m512 f = v;
    lo = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
    hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
    return;
  }
#endif
#if defined(__AVX__)
  if constexpr (sizeof(reg) == 32 && F::size == 8) {
    const __m256 f = v;
    lo = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
    hi = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
    return;
  }
#endif
#if defined(__SSE2__)
  if constexpr (sizeof(reg) == 16 && F::size == 4) {
    const __m128 f = v;
    lo = _mm_cvtps_pd(f);
    hi = _mm_cvtps_pd(_mm_movehl_ps(f, f));
    return;
  }
#endif
  alignas(64) float t[lanes];
  alignas(64) double d[lanes];
  v.store_aligned(t);
  for (std::size_t j = 0; j < lanes; ++j) d[j] = t[j];
  lo = D::load_aligned(d);
  hi = D::load_aligned(d + D::size);
}

// error_of lane-wise.
template <RoundingPolicy R>
fbatch fake_quant_error(const fbatch& v, const fbatch& vs, const fbatch& vinv, const fbatch& vylo,
                        const fbatch& vyhi) noexcept {
  const fbatch y = xsimd::min(xsimd::max(R::to_grid(v, vs, vinv) * vs, vylo), vyhi);
  return y - v;
}

template <RoundingPolicy R>
double quant_error(const float* x, std::size_t n, const quant_params& q, double p) noexcept {
  constexpr std::size_t parts = error_partials, h = dbatch::size;
  const float s = q.scale, inv = q.inv_scale();
  const auto [ylo, yhi] = dequant_bounds(q);
  const fbatch vs(s), vinv(inv), vylo(ylo), vyhi(yhi);
  const std::size_t vn = n - n % parts;
  alignas(64) double acc[parts] = {};
  if (p == 2.0 || p == 1.0) {
    // Four accumulators: partials [0, h), [h, 2h), ... of each step. Products of widened
    // floats are exact, so FMA contraction cannot change a bit.
    dbatch a0(0.0), a1(0.0), a2(0.0), a3(0.0);
    for (std::size_t i = 0; i < vn; i += parts) {
      const fbatch d0 = fake_quant_error<R>(fbatch::load_unaligned(x + i), vs, vinv, vylo, vyhi);
      const fbatch d1 =
          fake_quant_error<R>(fbatch::load_unaligned(x + i + lanes), vs, vinv, vylo, vyhi);
      dbatch w0, w1, w2, w3;
      widen(d0, w0, w1);
      widen(d1, w2, w3);
      if (p == 2.0) {
        a0 += w0 * w0;
        a1 += w1 * w1;
        a2 += w2 * w2;
        a3 += w3 * w3;
      } else {
        a0 += xsimd::abs(w0);
        a1 += xsimd::abs(w1);
        a2 += xsimd::abs(w2);
        a3 += xsimd::abs(w3);
      }
    }
    a0.store_aligned(acc);
    a1.store_aligned(acc + h);
    a2.store_aligned(acc + 2 * h);
    a3.store_aligned(acc + 3 * h);
  } else {
    alignas(64) float d[parts];
    for (std::size_t i = 0; i < vn; i += parts) {
      fake_quant_error<R>(fbatch::load_unaligned(x + i), vs, vinv, vylo, vyhi).store_aligned(d);
      fake_quant_error<R>(fbatch::load_unaligned(x + i + lanes), vs, vinv, vylo, vyhi)
          .store_aligned(d + lanes);
      for (std::size_t j = 0; j < parts; ++j) acc[j] += error_term(d[j], p);
    }
  }
  double total = 0.0;
  for (std::size_t j = 0; j < parts; ++j) total += acc[j];
  for (std::size_t i = vn; i < n; ++i) total += error_term(error_of<R>(x[i], s, inv, ylo, yhi), p);
  return total;
}
}  // namespace simd

inline void check_error_args(tensor_view<const float> x, const quant_params& q, double p,
                             const std::string& fn) {
  q.validate((fn + ": q").c_str());
  if (!(p > 0.0 && p <= 16.0))
    fail(errc::invalid_argument, fn + ": p", "must be in (0, 16], got " + std::to_string(p));
  check_not_empty(x.size(), fn + ": x");
  check_finite(x.data(), x.size(), fn + ": x");
}

// The candidate range for alpha: symmetric schemes use [-alpha m, alpha m].
inline range clip_at(const range& r, const quant_scheme& scheme, float alpha) noexcept {
  return scheme.symmetric ? r.symmetric().scaled(alpha) : r.scaled(alpha);
}

// Grid + golden-section search of alpha for a range r, given E(params) (a mean error).
template <class Eval>
mse_result search_alpha(const range& r, const quant_scheme& scheme, const mse_options& o,
                        Eval&& eval) {
  mse_result best;
  best.clip = clip_at(r, scheme, 1.0f);
  if (r.abs_max() == 0.0f) {  // nothing to clip; on_zero decides whether params exist
    best.params = params_for(scheme, best.clip, o.on_zero);
    return best;
  }
  auto error_at = [&](float alpha, quant_params& out) {
    out = params_for(scheme, clip_at(r, scheme, alpha), zero_range::use_epsilon);
    return eval(out);
  };
  const auto n = static_cast<double>(o.candidates);
  quant_params qp;
  best.error = error_at(1.0f, qp);
  best.params = qp;
  best.min_max_error = best.error;
  for (std::size_t k = o.candidates - 1; k >= 1; --k) {  // larger alpha first: ties keep it
    const auto alpha = static_cast<float>(static_cast<double>(k) / n);
    const double e = error_at(alpha, qp);
    if (e < best.error) {
      best = {clip_at(r, scheme, alpha), qp, alpha, e, best.min_max_error};
    }
  }
  if (o.refine_iterations > 0) {
    const double invphi = (std::sqrt(5.0) - 1.0) / 2.0;
    double a = std::max(static_cast<double>(best.alpha) - 1.0 / n, 0.5 / n);
    double b = std::min(static_cast<double>(best.alpha) + 1.0 / n, 1.0);
    double c = b - invphi * (b - a), d = a + invphi * (b - a);
    quant_params pc, pd;
    double fc = error_at(static_cast<float>(c), pc), fd = error_at(static_cast<float>(d), pd);
    auto consider = [&](double alpha, double e, const quant_params& q) {
      const auto af = static_cast<float>(alpha);
      if (e < best.error) best = {clip_at(r, scheme, af), q, af, e, best.min_max_error};
    };
    consider(c, fc, pc);
    consider(d, fd, pd);
    for (int it = 2; it < o.refine_iterations; ++it) {
      if (fc < fd) {  // keep [a, d]; on a tie keep [c, b], the larger alphas
        b = d;
        d = c;
        fd = fc;
        pd = pc;
        c = b - invphi * (b - a);
        fc = error_at(static_cast<float>(c), pc);
        consider(c, fc, pc);
      } else {
        a = c;
        c = d;
        fc = fd;
        pc = pd;
        d = a + invphi * (b - a);
        fd = error_at(static_cast<float>(d), pd);
        consider(d, fd, pd);
      }
    }
  }
  return best;
}

template <RoundingPolicy R>
mse_result mse_search_data(const float* x, std::size_t n, const range& r,
                           const quant_scheme& scheme, const mse_options& o) {
  return search_alpha(r, scheme, o, [&](const quant_params& q) {
    return simd::quant_error<R>(x, n, q, o.p) / static_cast<double>(n);
  });
}

}  // namespace detail

// Exact Lp-optimal clipping of x on the alpha grid (see the file comment).
// Complexity: O(n * (candidates + refine_iterations)), no allocation.
template <RoundingPolicy R = round_pytorch>
[[nodiscard]] mse_result mse_search(const FloatTensor auto& x, const quant_scheme& scheme,
                                    const mse_options& options = {}) {
  constexpr const char* fn = "mse_search";
  scheme.validate("mse_search: scheme.bits");
  options.validate(fn);
  const auto v = view(x);
  const range r = detail::min_max_impl<true>(v, "mse_search: x");
  return detail::mse_search_data<R>(v.data(), v.size(), r, scheme, options);
}

// Per-channel search along `axis`: every channel independently.
// Complexity: O(n) gather + O(n * (candidates + refine_iterations)); O(n) scratch memory.
template <RoundingPolicy R = round_pytorch>
[[nodiscard]] channel_mse_result mse_search_per_channel(const FloatTensor auto& x, std::size_t axis,
                                                        const quant_scheme& scheme,
                                                        const mse_options& options = {}) {
  constexpr const char* fn = "mse_search_per_channel";
  scheme.validate("mse_search_per_channel: scheme.bits");
  options.validate(fn);
  const auto v = view(x);
  const channel_ranges mm = detail::min_max_per_channel_impl<true>(v, axis, fn);
  const channel_layout l = channel_layout::of(v.shape(), axis);
  const std::size_t per = l.outer * l.inner;
  std::vector<float> buf(per);
  channel_mse_result out;
  out.clip.axis = axis;
  out.clip.lo.resize(l.channels);
  out.clip.hi.resize(l.channels);
  out.alpha.resize(l.channels);
  out.error.resize(l.channels);
  out.min_max_error.resize(l.channels);
  out.params.qmin = scheme.qmin();
  out.params.qmax = scheme.qmax();
  out.params.axis = axis;
  out.params.scale.resize(l.channels);
  out.params.zero_point.resize(l.channels);
  for (std::size_t c = 0; c < l.channels; ++c) {
    const float* src = v.data() + c * l.inner;
    for (std::size_t b = 0; b < l.outer; ++b)
      std::copy(src + b * l.channels * l.inner, src + b * l.channels * l.inner + l.inner,
                buf.begin() + static_cast<std::ptrdiff_t>(b * l.inner));
    const mse_result m =
        detail::mse_search_data<R>(buf.data(), per, mm.channel(c), scheme, options);
    out.clip.lo[c] = m.clip.lo;
    out.clip.hi[c] = m.clip.hi;
    out.alpha[c] = m.alpha;
    out.error[c] = m.error;
    out.min_max_error[c] = m.min_max_error;
    out.params.scale[c] = m.params.scale;
    out.params.zero_point[c] = m.params.zero_point;
  }
  return out;
}

// Approximate Lp-optimal clipping from a histogram (streaming activations): the same search, E
// evaluated on points_per_bin evenly spaced points per bin weighted by the bin's count.
// Complexity: O(bins * points_per_bin * (candidates + refine_iterations)).
template <RoundingPolicy R = round_pytorch>
[[nodiscard]] mse_result mse_search(const histogram& h, const quant_scheme& scheme,
                                    const mse_options& options = {}) {
  constexpr const char* fn = "mse_search";
  scheme.validate("mse_search: scheme.bits");
  options.validate(fn);
  if (h.empty()) detail::fail(errc::empty_input, "mse_search: h", "histogram is empty");
  // Sample points and weights, built once: O(bins * points_per_bin).
  std::vector<float> pts;
  std::vector<double> wts;
  const std::size_t k = options.points_per_bin;
  const auto counts = h.counts();
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    const double w = static_cast<double>(counts[i]) / static_cast<double>(k);
    for (std::size_t j = 0; j < k; ++j) {
      double t =
          h.edge(i) + (static_cast<double>(j) + 0.5) / static_cast<double>(k) * h.bin_width();
      t = t < h.min() ? h.min() : (t > h.max() ? h.max() : t);
      pts.push_back(static_cast<float>(t));
      wts.push_back(w);
    }
  }
  const double inv_total = 1.0 / static_cast<double>(h.total());
  const range r{h.min(), h.max()};
  return detail::search_alpha(r, scheme, options, [&](const quant_params& q) {
    const float s = q.scale, inv = q.inv_scale();
    const auto [ylo, yhi] = detail::dequant_bounds(q);
    double e = 0.0;
    for (std::size_t i = 0; i < pts.size(); ++i)
      e += wts[i] * detail::error_term(detail::error_of<R>(pts[i], s, inv, ylo, yhi), options.p);
    return e * inv_total;
  });
}

// The error kernel on its own: mean |fq(x) - x|^p with params q (SIMD) and its scalar twin.
// Complexity O(n). Errors: invalid q, p outside (0, 16], empty or non-finite x.
template <RoundingPolicy R = round_pytorch>
[[nodiscard]] double quant_error(const FloatTensor auto& x, const quant_params& q, double p = 2.0) {
  const auto v = view(x);
  detail::check_error_args(v, q, p, "quant_error");
  return detail::simd::quant_error<R>(v.data(), v.size(), q, p) / static_cast<double>(v.size());
}
template <RoundingPolicy R = round_pytorch>
[[nodiscard]] double quant_error_ref(const FloatTensor auto& x, const quant_params& q,
                                     double p = 2.0) {
  const auto v = view(x);
  detail::check_error_args(v, q, p, "quant_error_ref");
  return detail::quant_error_ref<R>(v.data(), v.size(), q, p) / static_cast<double>(v.size());
}

}  // namespace adaquant
