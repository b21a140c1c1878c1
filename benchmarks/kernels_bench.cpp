// Kernel throughput against memcpy of the same bytes, in the same binary and run.
// bytes/s counts what is read plus what is written (2 * 4 * n for fake quant), for memcpy and the
// kernels alike.
#include <adaquant/adaquant.hpp>

#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

namespace {
namespace aq = adaquant;

constexpr std::int64_t big = 16777216;    // 16M floats: 64 MiB in, 64 MiB out
constexpr std::int64_t resident = 16384;  // 64 KiB: stays in L2

std::vector<float> random_floats(std::size_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void set_bytes(benchmark::State& st, std::size_t n) {
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * 2 *
                       static_cast<std::int64_t>(n * sizeof(float)));
}

void bm_memcpy(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto x = random_floats(n);
  std::vector<float> y(n);
  for (auto _ : st) {
    std::memcpy(y.data(), x.data(), n * sizeof(float));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, n);
}

void bm_fake_quant_per_tensor(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const int bits = static_cast<int>(st.range(1));
  const auto x = random_floats(n);
  std::vector<float> y(n);
  const auto p = aq::params_from_range({bits, true, true, false}, -3.0f, 3.0f);
  const aq::tensor_view<const float> xv(x.data(), {n});
  const aq::tensor_view<float> yv(y.data(), {n});
  for (auto _ : st) {
    aq::fake_quant_per_tensor(xv, yv, p);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, n);
}

// Weights-like layout [out_channels, rest]: 256 channels, per-channel scales along axis 0.
void bm_fake_quant_per_channel(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const int bits = static_cast<int>(st.range(1));
  const std::size_t channels = 256;
  const auto x = random_floats(n);
  std::vector<float> y(n);
  std::vector<float> lo(channels, -3.0f), hi(channels);
  for (std::size_t c = 0; c < channels; ++c) hi[c] = 1.0f + 0.01f * static_cast<float>(c);
  const auto p = aq::channel_params_from_ranges({bits, true, true, false}, lo, hi, 0);
  const aq::tensor_view<const float> xv(x.data(), {channels, n / channels});
  const aq::tensor_view<float> yv(y.data(), {channels, n / channels});
  for (auto _ : st) {
    aq::fake_quant_per_channel(xv, yv, p);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, n);
}

// A weight W [rows, cols] per output channel (block 0: axis 0) or per block of `block` inputs
// (granularity::per_block(1, block)), 4 bits: the cost of blocks beside per channel at one shape.
void bm_fake_quant_weight(benchmark::State& st) {
  const auto rows = static_cast<std::size_t>(st.range(0)),
             cols = static_cast<std::size_t>(st.range(1));
  const auto block = static_cast<std::size_t>(st.range(2));
  const std::size_t n = rows * cols;
  const auto x = random_floats(n);
  std::vector<float> y(n);
  const aq::quant_scheme s{4, true, true, false};
  const aq::tensor_view<const float> xv(x.data(), {rows, cols});
  const aq::tensor_view<float> yv(y.data(), {rows, cols});
  const auto pc = aq::params_for(s, aq::min_max_per_channel(xv, 0));
  const auto pb =
      block ? aq::params_for(s, aq::min_max_per_block(xv, 1, block)) : aq::block_params{};
  for (auto _ : st) {
    if (block)
      aq::fake_quant_per_block(xv, yv, pb);
    else
      aq::fake_quant_per_channel(xv, yv, pc);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, n);
}

void bm_fake_quant_per_tensor_ref(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto x = random_floats(n);
  std::vector<float> y(n);
  const auto p =
      aq::params_from_range({static_cast<int>(st.range(1)), true, true, false}, -3.0f, 3.0f);
  for (auto _ : st) {
    aq::fake_quant_per_tensor_ref(aq::tensor_view<const float>(x.data(), {n}),
                                  aq::tensor_view<float>(y.data(), {n}), p);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, n);
}

void bm_quantize_int8_per_tensor(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto x = random_floats(n);
  std::vector<std::int8_t> q(n);
  const auto p = aq::params_from_range({8, true, true, false}, -3.0f, 3.0f);
  for (auto _ : st) {
    aq::quantize_per_tensor(aq::tensor_view<const float>(x.data(), {n}),
                            aq::tensor_view<std::int8_t>(q.data(), {n}), p);
    benchmark::DoNotOptimize(q.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(n * 5));
}

// Fake-quant backward (STE for x, LSQ sums for the scale and zero point) of one run with grad_x,
// SIMD or its scalar twin. bytes/s: x, y, grad_y read and grad_x written, plus the mask byte.
template <bool Simd>
void bm_fake_quant_backward(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto x = random_floats(n);
  std::vector<float> y(n), gy(x.rbegin(), x.rend()), gx(n);
  std::vector<std::uint8_t> mask(n);
  const auto p = aq::params_from_range({4, true, true, false}, -2.0f, 2.0f);
  aq::fake_quant_per_tensor(aq::tensor_view<const float>(x.data(), {n}),
                            aq::tensor_view<float>(y.data(), {n}), p, mask);
  for (auto _ : st) {
    double gs = 0.0, gz = 0.0;
    aq::detail::fq_backward_run<Simd>(x.data(), y.data(), mask.data(), gy.data(), n, p.scale,
                                      gx.data(), gs, gz);
    benchmark::DoNotOptimize(gs);
    benchmark::DoNotOptimize(gz);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(n * (4 * sizeof(float) + 1)));
}

// The squared error after a ReLU with its gradient (AdaQuant's loss), SIMD or its scalar twin,
// outputs and targets of random sign (every second element on the ReLU's flat side). bytes/s:
// q, t read and dy written.
template <bool Simd>
void bm_squared_error_relu(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto q = random_floats(n);
  const std::vector<float> t(q.rbegin(), q.rend());
  std::vector<float> dy(n);
  for (auto _ : st) {
    const double e = aq::detail::squared_error_run<Simd>(aq::detail::act_relu{}, t.data(), q.data(),
                                                         dy.data(), 1e-3f, n);
    benchmark::DoNotOptimize(e);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * 3 *
                       static_cast<std::int64_t>(n * sizeof(float)));
}

// Bias tuning's slope sums at one bias after a ReLU (one of the Newton steps of a channel), SIMD
// or its scalar twin. bytes/s: u and y read.
template <bool Simd>
void bm_bias_slope_sums_relu(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto u = random_floats(n);
  const std::vector<float> y(u.rbegin(), u.rend());
  for (auto _ : st) {
    aq::detail::bias_run_sums acc;
    aq::detail::bias_slope_sums_run<Simd>(aq::detail::act_relu{}, u.data(), y.data(), n, 0.1f, acc);
    benchmark::DoNotOptimize(acc);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * 2 *
                       static_cast<std::int64_t>(n * sizeof(float)));
}

// One Adam update of n parameters with one rate, SIMD or its scalar twin. bytes/s: x, m, v, g
// read and x, m, v written.
template <bool Simd>
void bm_adam_update(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  auto x = random_floats(n);
  const std::vector<float> g(x.rbegin(), x.rend());
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  const aq::detail::adam_coeffs k{0.9f, 0.999f, 1e-8f, 1e-4f, 10.0f, 1000.0f};
  for (auto _ : st) {
    aq::detail::adam_update_run<Simd>(x.data(), m.data(), v.data(), g.data(), n, k);
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(n * 7 * sizeof(float)));
}
}  // namespace

BENCHMARK(bm_memcpy)->Arg(big)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_fake_quant_per_tensor)
    ->Args({big, 8})
    ->Args({big, 4})
    ->Args({resident, 8})
    ->Args({resident, 4})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_fake_quant_per_channel)
    ->Args({big, 8})
    ->Args({big, 4})
    ->Args({resident, 8})
    ->Args({resident, 4})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_fake_quant_weight)
    ->ArgNames({"rows", "cols", "block"})
    ->ArgsProduct({{4096}, {4096}, {0, 32, 64, 128}})
    ->ArgsProduct({{128}, {128}, {0, 32, 64, 128}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_fake_quant_per_tensor_ref)
    ->Args({big, 4})
    ->Args({resident, 4})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_quantize_int8_per_tensor)->Arg(big)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(bm_fake_quant_backward, true)
    ->Arg(big)
    ->Arg(resident)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(bm_fake_quant_backward, false)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(bm_squared_error_relu, true)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(bm_squared_error_relu, false)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(bm_bias_slope_sums_relu, true)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(bm_bias_slope_sums_relu, false)->Arg(resident)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(bm_adam_update, true)
    ->Arg(1 << 20)
    ->Arg(resident)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(bm_adam_update, false)->Arg(resident)->Unit(benchmark::kMicrosecond);
