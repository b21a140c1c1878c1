// Bit allocation: the exact solver on seeded synthetic networks (8 options per layer; the
// generator is test support, tests/bitalloc/support/synthetic.hpp), one budget (size) and two
// budgets (size + BOPs). Each benchmark cycles through 5 seeded instances so one lucky instance
// cannot flatter the figure; counters report layers/s and the mean search nodes. Baselines in the
// same binary: the textbook dynamic program over an integer capacity (one budget, sizes counted in
// 4 KiB pages so the DP fits in memory), and exhaustive enumeration (any budgets, 8 layers).

#include <adaquant/bitalloc/solver.hpp>
#include <bitalloc/support/reference.hpp>
#include <bitalloc/support/synthetic.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <vector>

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();
constexpr int instances = 5;

// DoNotOptimize on a double lvalue miscompiles with GCC 12 + benchmark 1.7.1 (its "+m,r"
// constraint let the result's objective be clobbered): pass a pointer instead.
template <class T>
void keep(T& result) {
  T* p = &result;
  benchmark::DoNotOptimize(p);
  benchmark::ClobberMemory();
}

const std::vector<adaquant::synthetic_bit_allocation>& networks(std::size_t layers) {
  static std::map<std::size_t, std::vector<adaquant::synthetic_bit_allocation>> cache;
  auto& v = cache[layers];
  if (v.empty())
    for (int i = 0; i < instances; ++i)
      v.push_back(
          adaquant::make_synthetic_bit_allocation(layers, 1000 + static_cast<std::uint64_t>(i)));
  return v;
}

void run_solver(benchmark::State& state, bool two_budgets, double time_limit = inf) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto& nets = networks(n);
  std::size_t i = 0;
  double nodes = 0, not_optimal = 0, rel_gap = 0;
  adaquant::bit_allocation_options opt;
  opt.time_limit_seconds = time_limit;
  for (auto _ : state) {
    const auto& s = nets[i++ % nets.size()];
    const double budgets[2] = {s.size_budget, two_budgets ? s.bops_budget : inf};
    auto r = adaquant::minimize_loss(s.problem, budgets, opt);
    keep(r);
    nodes += static_cast<double>(r.nodes);
    if (r.status != adaquant::allocation_status::no_solution && r.objective > 0)
      rel_gap += r.gap() / r.objective;
    not_optimal += r.status != adaquant::allocation_status::optimal;
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
  state.counters["nodes"] = benchmark::Counter(nodes / static_cast<double>(state.iterations()));
  state.counters["not_optimal"] = not_optimal;
  state.counters["rel_gap"] = rel_gap / static_cast<double>(state.iterations());
}

void BM_bitalloc_solve_size(benchmark::State& state) { run_solver(state, false); }
void BM_bitalloc_solve_size_bops(benchmark::State& state) { run_solver(state, true); }
// Two budgets on large networks are not always proven within seconds: stop after 1 s and report
// the proven relative gap (not reproducible: it depends on the machine's speed).
void BM_bitalloc_solve_size_bops_1s(benchmark::State& state) { run_solver(state, true, 1.0); }

// One budget in 4 KiB pages: the same networks with size rounded up to pages, solved by the
// branch and bound and by the dynamic program over the page capacity.
struct paged {
  adaquant::bit_allocation_problem problem;
  std::vector<std::vector<double>> cost;
  std::vector<std::vector<std::int64_t>> pages;
  std::int64_t capacity = 0;
};

const std::vector<paged>& paged_networks(std::size_t layers) {
  static std::map<std::size_t, std::vector<paged>> cache;
  auto& v = cache[layers];
  if (!v.empty()) return v;
  for (const auto& s : networks(layers)) {
    paged pg;
    pg.problem.resource_names = {"pages"};
    std::int64_t lo = 0, hi = 0;
    for (const auto& layer : s.problem.layers) {
      adaquant::bit_allocation_layer pl{layer.name, {}};
      pg.cost.emplace_back();
      pg.pages.emplace_back();
      std::int64_t mn = INT64_MAX, mx = 0;
      for (const auto& o : layer.options) {
        const auto pages = static_cast<std::int64_t>(std::ceil(o.resources[0] / 4096.0));
        pl.options.push_back({o.bits, o.loss_delta, {static_cast<double>(pages)}});
        pg.cost.back().push_back(o.loss_delta);
        pg.pages.back().push_back(pages);
        mn = std::min(mn, pages);
        mx = std::max(mx, pages);
      }
      lo += mn;
      hi += mx;
      pg.problem.layers.push_back(std::move(pl));
    }
    pg.capacity = lo + (hi - lo) * 35 / 100;
    v.push_back(std::move(pg));
  }
  return v;
}

void BM_bitalloc_solve_pages(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto& nets = paged_networks(n);
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& pg = nets[i++ % nets.size()];
    auto r = adaquant::minimize_loss(pg.problem, {static_cast<double>(pg.capacity)});
    keep(r);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}

void BM_bitalloc_baseline_dp_pages(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto& nets = paged_networks(n);
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& pg = nets[i++ % nets.size()];
    auto r = adaquant::detail::dp_min(pg.cost, pg.pages, pg.capacity);
    keep(r);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}

// Eight layers x 8 options, two budgets: the solver against trying all 8^8 choices.
void BM_bitalloc_solve_8_layers(benchmark::State& state) {
  const auto& s = networks(8)[0];
  const double budgets[2] = {s.size_budget, s.bops_budget};
  for (auto _ : state) {
    auto r = adaquant::minimize_loss(s.problem, budgets);
    keep(r);
  }
}

void BM_bitalloc_baseline_enumerate_8_layers(benchmark::State& state) {
  const auto& s = networks(8)[0];
  std::vector<std::vector<double>> cost;
  std::vector<std::vector<std::vector<double>>> rows(2);
  for (const auto& layer : s.problem.layers) {
    cost.emplace_back();
    for (auto& r : rows) r.emplace_back();
    for (const auto& o : layer.options) {
      cost.back().push_back(o.loss_delta);
      rows[0].back().push_back(o.resources[0]);
      rows[1].back().push_back(o.resources[1]);
    }
  }
  const double caps[2] = {s.size_budget, s.bops_budget};
  for (auto _ : state) {
    auto r = adaquant::detail::enumerate_min(cost, rows, caps);
    keep(r);
  }
}

}  // namespace

BENCHMARK(BM_bitalloc_solve_size)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bitalloc_solve_size_bops)->Arg(100)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bitalloc_solve_size_bops_1s)
    ->Arg(1000)
    ->Arg(10000)
    ->Iterations(instances)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bitalloc_solve_pages)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bitalloc_baseline_dp_pages)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bitalloc_solve_8_layers)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bitalloc_baseline_enumerate_8_layers)->Unit(benchmark::kMillisecond);
