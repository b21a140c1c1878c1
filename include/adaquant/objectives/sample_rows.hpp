#pragma once
// Calibration samples of one size held in one or more contiguous runs of memory, read in sample
// order: sample i is the i-th block of per_sample floats across the runs, taken in turn.
//
//   sample_rows x(span_of_all, per_sample);           // one run (a contiguous cache)
//   sample_rows x({run0, run1, ...}, per_sample);     // e.g. the chunks a network captured
//   x.samples(); x.row(i); x.runs();
//
// AdaQuant's layer objective reads its inputs through this, so a network can lend the inputs it
// holds anyway (calibrate/network.hpp, held_inputs) instead of a copy. Everything computed over
// all samples (ranges, sums) walks the runs in order, so the result does not depend on where the
// runs split (the quantization error, kernels/quant_error.hpp, accumulates across runs as over
// one array: quant_error_runs below).
// Errors: a run whose length is not a multiple of per_sample, or per_sample 0 with data
// (errc::shape_mismatch).

#include <adaquant/core/error.hpp>
#include <adaquant/kernels/quant_error.hpp>
#include <adaquant/range/min_max.hpp>
#include <adaquant/range/mse_search.hpp>
#include <adaquant/range/quantizer_spec.hpp>
#include <adaquant/range/range.hpp>

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

class sample_rows {
 public:
  sample_rows() = default;
  sample_rows(std::span<const float> all, std::size_t per_sample)
      : sample_rows(std::vector<std::span<const float>>{all}, per_sample) {}
  sample_rows(std::vector<std::span<const float>> runs, std::size_t per_sample)
      : runs_(std::move(runs)), per_(per_sample) {
    std::erase_if(runs_, [](std::span<const float> r) { return r.empty(); });
    for (std::size_t r = 0; r < runs_.size(); ++r) {
      if (!(per_ > 0 && runs_[r].size() % per_ == 0))
        detail::fail(errc::shape_mismatch, "sample_rows: runs[" + std::to_string(r) + "]",
                     std::to_string(runs_[r].size()) + " elements is not a multiple of the " +
                         std::to_string(per_) + " per sample");
      for (std::size_t o = 0; o < runs_[r].size(); o += per_) rows_.push_back(runs_[r].data() + o);
      elements_ += runs_[r].size();
    }
  }

  [[nodiscard]] std::size_t samples() const noexcept { return rows_.size(); }
  [[nodiscard]] std::size_t per_sample() const noexcept { return per_; }
  [[nodiscard]] std::size_t elements() const noexcept { return elements_; }
  [[nodiscard]] bool empty() const noexcept { return elements_ == 0; }
  [[nodiscard]] const float* row(std::size_t i) const noexcept { return rows_[i]; }
  // The runs in sample order (none empty).
  [[nodiscard]] const std::vector<std::span<const float>>& runs() const noexcept { return runs_; }
  // The single run when the samples are contiguous, else an empty span.
  [[nodiscard]] std::span<const float> contiguous() const noexcept {
    return runs_.size() == 1 ? runs_[0] : std::span<const float>{};
  }

 private:
  std::vector<std::span<const float>> runs_;
  std::vector<const float*> rows_;
  std::size_t per_ = 0, elements_ = 0;
};

namespace detail {

// sum_i |fq(x_i) - x_i|^p over the runs of x in order, bit for bit the SIMD kernel's sum over
// them as one array: blocks of error_partials elements go to the same partial sums whichever run
// they come from (a block split by a run's end is assembled in a small buffer), and the tail
// after the last whole block is added last.
template <RoundingPolicy R>
double quant_error_runs(const sample_rows& x, const quant_params& q, double p) noexcept {
  constexpr std::size_t parts = error_partials;
  alignas(64) double acc[parts] = {};
  alignas(64) float carry[parts];
  std::size_t held = 0;  // elements in carry
  for (std::span<const float> r : x.runs()) {
    const float* d = r.data();
    std::size_t n = r.size();
    if (held > 0) {
      const std::size_t take = std::min(parts - held, n);
      std::copy_n(d, take, carry + held);
      held += take, d += take, n -= take;
      if (held < parts) continue;
      simd::quant_error_partials<R>(carry, parts, q, p, acc);
      held = 0;
    }
    const std::size_t whole = n - n % parts;
    simd::quant_error_partials<R>(d, whole, q, p, acc);
    std::copy_n(d + whole, n - whole, carry);
    held = n - whole;
  }
  double total = 0.0;
  for (std::size_t j = 0; j < parts; ++j) total += acc[j];
  return quant_error_ref<R>(carry, held, q, p, total);
}

}  // namespace detail

// [min, max] over all samples, as min_max over them as one array (errc::non_finite for NaN/inf).
[[nodiscard]] inline range min_max(const sample_rows& x) {
  range r{0.0f, 0.0f};
  for (std::size_t k = 0; k < x.runs().size(); ++k) {
    const std::span<const float> run = x.runs()[k];
    const range m = min_max(tensor_view<const float>(run.data(), {run.size()}));
    r = k == 0 ? m : range{std::min(r.lo, m.lo), std::max(r.hi, m.hi)};
  }
  return r;
}

// Per-tensor parameters of a per-tensor spec over all samples: the same as estimate_tensor_params
// (range/quantizer_spec.hpp) over the samples as one array, bit for bit. min_max and mse read the
// runs where they are; percentile gathers them into one temporary array first.
[[nodiscard]] inline quant_params estimate_tensor_params(const sample_rows& x,
                                                         const quantizer_spec& spec,
                                                         zero_range on_zero = zero_range::reject) {
  const std::span<const float> one = x.contiguous();
  if (x.runs().size() <= 1)
    return estimate_tensor_params(tensor_view<const float>(one.data(), {one.size()}), spec,
                                  on_zero);
  detail::require_granularity(spec.gran, granularity::kind::per_tensor,
                              "estimate_tensor_params: spec.gran");
  spec.scheme.validate("estimate_range: scheme.bits");
  const estimate_options o = spec.estimate(on_zero);
  range r = min_max(x);
  if (spec.range == range_method::percentile) {
    std::vector<float> all;
    all.reserve(x.elements());
    for (std::span<const float> run : x.runs()) all.insert(all.end(), run.begin(), run.end());
    return estimate_tensor_params(tensor_view<const float>(all.data(), {all.size()}), spec,
                                  on_zero);
  }
  if (spec.range == range_method::mse) {
    mse_options m = o.mse;
    m.on_zero = zero_range::use_epsilon;  // the range is wanted, not params
    m.validate("mse_search");
    const double n = static_cast<double>(x.elements());
    r = with_rounding(o.rounding, [&](auto rounding) {
      using R = decltype(rounding);
      return detail::search_alpha(
                 r, spec.scheme, m,
                 [&](const quant_params& q) { return detail::quant_error_runs<R>(x, q, m.p) / n; })
          .clip;
    });
  }
  return params_for(spec.scheme, r, o.on_zero);
}

}  // namespace adaquant
