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
// and compounds through ReLUs, docs/range.md), so all-equal errors return min/max.
//
// Two evaluators:
//   on the data  mse_search(x, scheme)            exact E; weights and cached activations.
//                O(n * (candidates + refine_iterations)); E is the kernel quant_error
//                (kernels/quant_error.hpp, SIMD with a scalar twin equal bit for bit).
//   on a histogram  mse_search(histogram, scheme)  for streaming activations: each bin's mass is
//                spread over `points_per_bin` evenly spaced points. O(bins * points_per_bin *
//                (candidates + refine_iterations)), independent of the data size; E is then
//                approximate (the histogram's bin width is the resolution).
// Per channel: each channel is searched independently on its own data (O(n) gather + the same
// cost summed over channels). Per block (granularity::per_block): each block likewise, on its
// own elements (no gather when the blocked axis is the innermost).
//
// Errors: as min_max (empty, non-finite, axis, block_size); options outside their domain
// (errc::invalid_argument naming the field); an all-zero tensor or channel follows
// options.on_zero through params_from_range (reject: errc::invalid_argument).

#include <adaquant/core/concepts.hpp>
#include <adaquant/kernels/quant_error.hpp>
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

struct block_mse_result {
  block_ranges clip;
  block_params params;
  std::vector<float> alpha;
  std::vector<double> error;
  std::vector<double> min_max_error;
};

namespace detail {

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

// The per-channel or per-block result sized for n searches, and search j's result stored.
template <class Result>
void resize_results(Result& out, std::size_t n) {
  out.clip.lo.resize(n);
  out.clip.hi.resize(n);
  out.alpha.resize(n);
  out.error.resize(n);
  out.min_max_error.resize(n);
  out.params.scale.resize(n);
  out.params.zero_point.resize(n);
}
template <class Result>
void store_result(Result& out, std::size_t j, const mse_result& m) {
  out.clip.lo[j] = m.clip.lo;
  out.clip.hi[j] = m.clip.hi;
  out.alpha[j] = m.alpha;
  out.error[j] = m.error;
  out.min_max_error[j] = m.min_max_error;
  out.params.scale[j] = m.params.scale;
  out.params.zero_point[j] = m.params.zero_point;
}

template <RoundingPolicy R>
mse_result mse_search_data(const float* x, std::size_t n, const range& r,
                           const quant_scheme& scheme, const mse_options& o) {
  return search_alpha(r, scheme, o, [&](const quant_params& q) {
    return quant_error_run<true, R>(x, n, q, o.p) / static_cast<double>(n);
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
  out.clip = mm;
  out.params = {{}, {}, scheme.qmin(), scheme.qmax(), axis};
  detail::resize_results(out, l.channels);
  for (std::size_t c = 0; c < l.channels; ++c) {
    detail::gather_channel(v.data(), l, c, buf.data());
    detail::store_result(
        out, c, detail::mse_search_data<R>(buf.data(), per, mm.channel(c), scheme, options));
  }
  return out;
}

// Per-block search: blocks of block_size indices along `axis`, every block independently.
// Complexity: O(n * (candidates + refine_iterations)); O(block_size) scratch memory.
template <RoundingPolicy R = round_pytorch>
[[nodiscard]] block_mse_result mse_search_per_block(const FloatTensor auto& x, std::size_t axis,
                                                    std::size_t block_size,
                                                    const quant_scheme& scheme,
                                                    const mse_options& options = {}) {
  constexpr const char* fn = "mse_search_per_block";
  scheme.validate("mse_search_per_block: scheme.bits");
  options.validate(fn);
  const auto v = view(x);
  const block_ranges mm = detail::min_max_per_block_impl<true>(v, axis, block_size, fn);
  const block_layout l = block_layout::of(v.shape(), axis, block_size);
  block_mse_result out;
  out.clip = mm;
  out.params = {{}, {}, scheme.qmin(), scheme.qmax(), axis, block_size};
  detail::resize_results(out, l.params());
  std::vector<float> buf(l.inner == 1 ? 0 : std::min(block_size, l.extent));
  l.for_each_chunk([&](std::size_t o, const channel_layout& c, std::size_t first) {
    for (std::size_t k = 0; k < c.channels; ++k) {
      const float* data = v.data() + o;
      if (c.channels > 1) {  // a block along an outer axis: its elements are strided
        detail::gather_channel(v.data() + o, c, k, buf.data());
        data = buf.data();
      }
      detail::store_result(out, first + k,
                           detail::mse_search_data<R>(data, c.outer * c.inner, mm.block(first + k),
                                                      scheme, options));
    }
  });
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

}  // namespace adaquant
