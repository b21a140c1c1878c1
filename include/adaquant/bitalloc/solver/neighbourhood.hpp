#pragma once
// Window search (several rows): the incumbent improved by large-neighbourhood search. Every layer
// keeps its incumbent option except the core layers of one window, which keep all their options;
// that sub-problem is solved by the whole solver under a node cap, and a cheaper answer becomes
// the incumbent. Windows overlap by half. Two orders of the core make the windows: by ambiguity
// (most ambiguous first: layers whose options the bound barely separates), and by resource range
// (sum over rows of (max - min use among the layer's options) / cap, widest first: the lumpy
// layers, which must trade with each other for every budget to fit at once). The sub-problems only
// ever propose incumbents: nothing they prune joins the proof.

#include <adaquant/bitalloc/lp_bound.hpp>
#include <adaquant/bitalloc/solver/bounded_search.hpp>
#include <adaquant/bitalloc/solver/progress.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace adaquant::detail {

inline constexpr std::uint64_t window_nodes = std::uint64_t{1} << 17;  // per sub-problem

// The incumbent as option indices of p; false when one of its options has been reduced away
// (then it is within the gap of the optimum and no window can beat it by more).
[[nodiscard]] inline bool incumbent_options(const mckp& p, const search_progress& pr,
                                            std::vector<std::size_t>& x) {
  if (pr.best.size() != p.groups()) return false;
  x.assign(p.groups(), 0);
  for (std::size_t g = 0; g < p.groups(); ++g) {
    std::size_t o = p.begin[g];
    while (o < p.begin[g + 1] && p.label[o] != pr.best[g]) ++o;
    if (o == p.begin[g + 1]) return false;
    x[g] = o;
  }
  return true;
}

// Sorts core layers by resource range, widest first (ties keep their order).
inline void order_by_range(const mckp& p, std::vector<std::size_t>& layers) {
  std::vector<double> range(p.groups(), 0.0);
  for (std::size_t g : layers)
    for (std::size_t r = 0; r < p.rows; ++r) {
      double mn = inf, mx = 0.0;
      for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) {
        mn = std::min(mn, p.a(o, r));
        mx = std::max(mx, p.a(o, r));
      }
      range[g] += (mx - mn) / (p.cap[r] > 0.0 ? p.cap[r] : 1.0);
    }
  std::stable_sort(layers.begin(), layers.end(),
                   [&](std::size_t i, std::size_t j) { return range[i] > range[j]; });
}

// One sweep of windows of `window_layers` core layers over the core of p, in ambiguity order or
// (by_range) in resource-range order. solve(sub, limits) runs the solver on a sub-problem.
// Returns true when the incumbent improved.
template <class Solve>
bool window_search(const mckp& p, search_progress& pr, const std::vector<double>& lambda,
                   std::size_t window_layers, bool by_range, Solve&& solve) {
  std::vector<std::size_t> x;
  if (!incumbent_options(p, pr, x)) return false;
  search_core core = make_search_core(p, lambda, true);
  if (by_range) order_by_range(p, core.layers);
  const std::size_t K = core.layers.size();
  if (K <= window_layers) return false;  // the exact search covers it whole
  mckp_limits lim;
  lim.node_limit =
      pr.lim.node_limit == 0 ? window_nodes : std::min(window_nodes, pr.lim.node_limit);
  lim.rel_gap = pr.lim.rel_gap;
  lim.abs_gap = pr.lim.abs_gap;
  lim.min_window = 0;
  const std::size_t R = p.rows;
  bool improved = false;
  std::vector<char> in_window(p.groups());
  const std::size_t step = std::max<std::size_t>(1, window_layers / 2);
  for (std::size_t start = 0; start < K; start += step) {
    if (pr.time_up()) break;
    if (pr.lim.time_limit < inf) {
      const std::chrono::duration<double> el = std::chrono::steady_clock::now() - pr.start;
      lim.time_limit = pr.lim.time_limit - el.count();
    }
    // The sub-problem holds the window's layers only (labels: option indices of p); the other
    // layers' incumbent options are folded into its capacities.
    const std::size_t end = std::min(K, start + window_layers);
    std::fill(in_window.begin(), in_window.end(), char{0});
    for (std::size_t k = start; k < end; ++k) in_window[core.layers[k]] = 1;
    mckp sub;
    sub.rows = R;
    sub.cap = p.cap;
    double fixed_cost = 0.0;
    for (std::size_t g = 0; g < p.groups(); ++g) {
      if (in_window[g]) continue;
      fixed_cost += p.cost[x[g]];
      for (std::size_t r = 0; r < R; ++r) sub.cap[r] -= p.a(x[g], r);
    }
    for (std::size_t k = start; k < end; ++k) {
      const std::size_t g = core.layers[k];
      for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) {
        sub.cost.push_back(p.cost[o]);
        for (std::size_t r = 0; r < R; ++r) sub.res.push_back(p.a(o, r));
        sub.label.push_back(static_cast<std::uint32_t>(o));
      }
      sub.begin.push_back(sub.cost.size());
    }
    const mckp_outcome out = solve(std::move(sub), lim);
    if (out.status == allocation_status::no_solution || !(fixed_cost + out.objective < pr.ub))
      continue;
    std::vector<std::size_t> y = x;
    for (std::size_t k = start; k < end; ++k) y[core.layers[k]] = out.choice[k - start];
    const double before = pr.ub;
    pr.offer(p, y);  // re-sums on p and re-checks every row
    if (pr.ub < before) {
      x = std::move(y);
      improved = true;
    }
  }
  return improved;
}

}  // namespace adaquant::detail
