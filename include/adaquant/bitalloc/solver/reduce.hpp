#pragma once
// Reductions: each removes options that no optimum (or no improvement on the incumbent) uses.

#include <adaquant/bitalloc/lp_bound.hpp>
#include <adaquant/bitalloc/solver/progress.hpp>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace adaquant::detail {

// Drops options that cannot fit beside the lightest choice of every other group, until stable.
// Returns false when a row cannot be met or a group runs out of options.
inline bool fit_reduce(mckp& p) {
  const std::size_t R = p.rows, G = p.groups();
  std::vector<double> minsum(R), gmin(G * R);
  std::vector<char> keep;
  for (;;) {
    std::fill(minsum.begin(), minsum.end(), 0.0);
    for (std::size_t g = 0; g < G; ++g) {
      if (p.begin[g] == p.begin[g + 1]) return false;
      for (std::size_t r = 0; r < R; ++r) {
        double m = inf;
        for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) m = std::min(m, p.a(o, r));
        gmin[g * R + r] = m;
        minsum[r] += m;
      }
    }
    for (std::size_t r = 0; r < R; ++r)
      if (!(minsum[r] <= p.cap[r])) return false;
    keep.assign(p.options(), 1);
    bool removed = false;
    for (std::size_t g = 0; g < G; ++g)
      for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o)
        for (std::size_t r = 0; r < R; ++r)
          if (p.a(o, r) > gmin[g * R + r] &&
              !(minsum[r] - gmin[g * R + r] + p.a(o, r) <= p.cap[r])) {
            keep[o] = 0;
            removed = true;
            break;
          }
    if (!removed) return true;
    compact(p, keep);
  }
}

// Option j goes when another option i of its group is no worse in cost and every row (ties keep
// the lower index).
inline void remove_dominated(mckp& p) {
  const std::size_t R = p.rows;
  std::vector<char> keep(p.options(), 1);
  for (std::size_t g = 0; g < p.groups(); ++g)
    for (std::size_t j = p.begin[g]; j < p.begin[g + 1]; ++j)
      for (std::size_t i = p.begin[g]; i < p.begin[g + 1] && keep[j]; ++i) {
        if (i == j || !keep[i] || p.cost[i] > p.cost[j]) continue;
        bool no_worse = true, better = p.cost[i] < p.cost[j];
        for (std::size_t r = 0; r < R && no_worse; ++r) {
          no_worse = p.a(i, r) <= p.a(j, r);
          better = better || p.a(i, r) < p.a(j, r);
        }
        if (no_worse && (better || i < j)) keep[j] = 0;
      }
  compact(p, keep);
}

// Reduced-cost fixing with multipliers lambda whose Lagrangian value on p is `bound`: choosing o
// lifts the bound by its reduced cost, so an option whose lifted bound reaches the incumbent goes
// (its bound joins the proof). Returns the number of options removed.
inline std::size_t reduced_cost_fix(mckp& p, const std::vector<double>& lambda, double bound,
                                    search_progress& pr) {
  const std::size_t R = p.rows;
  const double cut = pr.ub - pr.eps();
  std::vector<char> keep(p.options(), 1);
  std::vector<double> val;
  std::size_t removed = 0;
  for (std::size_t g = 0; g < p.groups(); ++g) {
    val.clear();
    double mn = inf;
    for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) {
      double v = p.cost[o];
      for (std::size_t r = 0; r < R; ++r) v += lambda[r] * p.a(o, r);
      val.push_back(v);
      mn = std::min(mn, v);
    }
    for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) {
      const double b = bound + (val[o - p.begin[g]] - mn);
      if (b >= cut) {
        keep[o] = 0;
        pr.discard(b);
        ++removed;
      }
    }
  }
  if (removed) compact(p, keep);
  return removed;
}

}  // namespace adaquant::detail
