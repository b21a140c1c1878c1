// Range estimators beside their baselines in the same binary and run.
//   min/max:   std::minmax_element (the straightforward implementation) and the scalar twin.
//   MSE search: a straightforward search (fake_quant_per_tensor into a buffer, then sum the
//              squared differences, per candidate) and the scalar twin of the error kernel.
// bytes/s counts the tensor's bytes once per call (what one estimate reads as input);
// "evals/s" counts element evaluations (n per candidate) for the searches.
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/range/estimator.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

namespace {
namespace aq = adaquant;

constexpr std::int64_t big = 16777216;    // 16M floats: 64 MiB, beyond the caches
constexpr std::int64_t resident = 16384;  // 64 KiB: stays in L2
constexpr std::int64_t mse_n = 1 << 20;   // 1M floats
constexpr aq::quant_scheme int4_sym{4, true, true, false};

std::vector<float> random_floats(std::size_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void set_bytes(benchmark::State& st, std::size_t n) {
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(n * sizeof(float)));
}

void set_evals(benchmark::State& st, std::size_t n, std::size_t evals_per_call) {
  st.counters["evals/s"] = benchmark::Counter(
      static_cast<double>(st.iterations()) * static_cast<double>(n * evals_per_call),
      benchmark::Counter::kIsRate);
}

void bm_minmax_element_baseline(benchmark::State& st) {
  const auto x = random_floats(static_cast<std::size_t>(st.range(0)));
  for (auto _ : st) {
    auto r = std::minmax_element(x.begin(), x.end());
    benchmark::DoNotOptimize(r);
  }
  set_bytes(st, x.size());
}

void bm_min_max(benchmark::State& st) {
  const auto x = random_floats(static_cast<std::size_t>(st.range(0)));
  const aq::tensor_view<const float> v(x.data(), {x.size()});
  for (auto _ : st) {
    auto r = aq::min_max(v);
    benchmark::DoNotOptimize(r);
  }
  set_bytes(st, x.size());
}

void bm_min_max_ref(benchmark::State& st) {
  const auto x = random_floats(static_cast<std::size_t>(st.range(0)));
  const aq::tensor_view<const float> v(x.data(), {x.size()});
  for (auto _ : st) {
    auto r = aq::min_max_ref(v);
    benchmark::DoNotOptimize(r);
  }
  set_bytes(st, x.size());
}

// Weights-like [256, n / 256] per channel along axis 0, and activations-like [n / 256, 256]
// along axis 1 (channels innermost).
void bm_min_max_per_channel(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const std::size_t axis = static_cast<std::size_t>(st.range(1));
  const auto x = random_floats(n);
  const aq::tensor_view<const float> v(x.data(), axis == 0
                                                     ? aq::tensor_shape::packed({256, n / 256})
                                                     : aq::tensor_shape::packed({n / 256, 256}));
  for (auto _ : st) {
    auto r = aq::min_max_per_channel(v, axis);
    benchmark::DoNotOptimize(r.lo.data());
  }
  set_bytes(st, n);
}

void bm_percentile_observe(benchmark::State& st) {
  const auto x = random_floats(static_cast<std::size_t>(st.range(0)));
  const aq::tensor_view<const float> v(x.data(), {x.size()});
  for (auto _ : st) {
    aq::percentile_observer o;
    o.observe(v);
    auto r = o.result(99.99);
    benchmark::DoNotOptimize(r);
  }
  set_bytes(st, x.size());
}

// The straightforward search: per candidate, fake-quantize into a buffer with the SIMD kernel,
// then sum the squared error (100 grid candidates, as mse_search with refine_iterations = 0).
void bm_mse_search_naive(benchmark::State& st) {
  const auto x = random_floats(static_cast<std::size_t>(st.range(0)));
  std::vector<float> y(x.size());
  const aq::tensor_view<const float> xv(x.data(), {x.size()});
  const aq::tensor_view<float> yv(y.data(), {y.size()});
  for (auto _ : st) {
    const aq::range mm = aq::min_max(xv).symmetric();
    double best = 0;
    float best_alpha = 1.0f;
    for (int k = 100; k >= 1; --k) {
      const float alpha = static_cast<float>(k) / 100.0f;
      aq::fake_quant_per_tensor(xv, yv, aq::params_for(int4_sym, mm.scaled(alpha)));
      double e = 0;
      for (std::size_t i = 0; i < x.size(); ++i) {
        const double d = double{y[i]} - double{x[i]};
        e += d * d;
      }
      if (k == 100 || e < best) {
        best = e;
        best_alpha = alpha;
      }
    }
    benchmark::DoNotOptimize(best_alpha);
  }
  set_bytes(st, x.size());
  set_evals(st, x.size(), 100);
}

void bm_mse_search(benchmark::State& st) {
  const auto x = random_floats(static_cast<std::size_t>(st.range(0)));
  const aq::tensor_view<const float> v(x.data(), {x.size()});
  const aq::mse_options o{100, static_cast<int>(st.range(1))};
  for (auto _ : st) {
    auto r = aq::mse_search(v, int4_sym, o);
    benchmark::DoNotOptimize(r);
  }
  set_bytes(st, x.size());
  set_evals(st, x.size(), 100 + static_cast<std::size_t>(st.range(1)));
}

// The error kernel alone (one candidate), SIMD and scalar twin.
void bm_quant_error(benchmark::State& st) {
  const auto x = random_floats(static_cast<std::size_t>(st.range(0)));
  const aq::tensor_view<const float> v(x.data(), {x.size()});
  const auto p = aq::params_from_range(int4_sym, -2.5f, 2.5f);
  for (auto _ : st)
    benchmark::DoNotOptimize(
        aq::detail::simd::quant_error<aq::round_pytorch>(v.data(), v.size(), p, 2.0));
  set_bytes(st, x.size());
}

void bm_quant_error_ref(benchmark::State& st) {
  const auto x = random_floats(static_cast<std::size_t>(st.range(0)));
  const aq::tensor_view<const float> v(x.data(), {x.size()});
  const auto p = aq::params_from_range(int4_sym, -2.5f, 2.5f);
  for (auto _ : st)
    benchmark::DoNotOptimize(
        aq::detail::quant_error_ref<aq::round_pytorch>(v.data(), v.size(), p, 2.0));
  set_bytes(st, x.size());
}

// Streaming activations: the histogram (built once per batch elsewhere) is searched instead.
void bm_mse_search_histogram(benchmark::State& st) {
  const auto x = random_floats(static_cast<std::size_t>(st.range(0)));
  aq::histogram h(2048);
  h.add(aq::tensor_view<const float>(x.data(), {x.size()}));
  for (auto _ : st) {
    auto r = aq::mse_search(h, int4_sym);
    benchmark::DoNotOptimize(r);
  }
}

void bm_mse_search_per_channel(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto x = random_floats(n);
  const aq::tensor_view<const float> v(x.data(), {256, n / 256});
  for (auto _ : st) {
    auto r = aq::mse_search_per_channel(v, 0, int4_sym);
    benchmark::DoNotOptimize(r.alpha.data());
  }
  set_bytes(st, n);
  set_evals(st, n, 120);
}

}  // namespace

BENCHMARK(bm_minmax_element_baseline)->Arg(big)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_min_max)->Arg(big)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_min_max_ref)->Arg(big)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_min_max_per_channel)->Args({big, 0})->Args({big, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_percentile_observe)->Arg(mse_n)->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_mse_search_naive)->Arg(mse_n)->Unit(benchmark::kMillisecond);
BENCHMARK(bm_mse_search)->Args({mse_n, 0})->Args({mse_n, 20})->Unit(benchmark::kMillisecond);
BENCHMARK(bm_mse_search_per_channel)->Arg(mse_n)->Unit(benchmark::kMillisecond);
BENCHMARK(bm_quant_error)->Arg(mse_n)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_quant_error_ref)->Arg(mse_n)->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_mse_search_histogram)->Arg(mse_n)->Unit(benchmark::kMicrosecond);
