#pragma once
// Incumbent heuristics: cheap feasible choices that let the bounds prune from the start.

#include <adaquant/bitalloc/lp_bound.hpp>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace adaquant::detail {

[[nodiscard]] inline std::vector<double> usage(const mckp& p, const std::vector<std::size_t>& x) {
  std::vector<double> use(p.rows, 0.0);
  for (std::size_t g = 0; g < x.size(); ++g)
    for (std::size_t r = 0; r < p.rows; ++r) use[r] += p.a(x[g], r);
  return use;
}

// One row: the LP's integral rounding lp.x, then every later hull segment (ws.segs, by decreasing
// efficiency) that continues its group's path and still fits.
[[nodiscard]] inline std::vector<std::size_t> lp_greedy_rounding(const mckp& p,
                                                                 const lp1_result& lp,
                                                                 const lp1_workspace& ws) {
  std::vector<std::size_t> x = lp.x;
  auto use = usage(p, x);
  double residual = p.cap[0] - use[0];
  std::vector<char> blocked(p.groups(), 0);
  bool after = false;
  for (const auto& s : ws.segs) {
    if (s.group == lp.brk_group && s.to == lp.brk_to) after = true;
    if (!after) continue;
    if (blocked[s.group] || x[s.group] != s.from) {
      blocked[s.group] = 1;
      continue;
    }
    if (s.da <= residual) {
      residual -= s.da;
      x[s.group] = s.to;
    } else {
      blocked[s.group] = 1;
    }
  }
  return x;
}

// Moves to feasibility: repeatedly applies the single-layer change with the least cost per unit
// of (capacity-normalised) violation removed. Returns false if it gives up.
inline bool repair(const mckp& p, std::vector<std::size_t>& x) {
  const std::size_t R = p.rows;
  auto use = usage(p, x);
  auto violation = [&](std::size_t r, double u) {
    const double scale = p.cap[r] > 0.0 ? p.cap[r] : 1.0;
    return std::max(0.0, u - p.cap[r]) / scale;
  };
  for (int it = 0; it < 512; ++it) {
    double viol = 0.0;
    for (std::size_t r = 0; r < R; ++r) viol += violation(r, use[r]);
    if (viol == 0.0) return true;
    double best_score = inf;
    std::size_t bg = 0, bo = 0;
    for (std::size_t g = 0; g < p.groups(); ++g) {
      const std::size_t cur = x[g];
      for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) {
        if (o == cur) continue;
        double v = 0.0;
        for (std::size_t r = 0; r < R; ++r) v += violation(r, use[r] - p.a(cur, r) + p.a(o, r));
        const double red = viol - v;
        if (!(red > 0.0)) continue;
        const double score = (p.cost[o] - p.cost[cur]) / red;
        if (score < best_score) {
          best_score = score;
          bg = g;
          bo = o;
        }
      }
    }
    if (best_score == inf) return false;
    for (std::size_t r = 0; r < R; ++r) use[r] += p.a(bo, r) - p.a(x[bg], r);
    x[bg] = bo;
  }
  return false;
}

// Best-improvement local search over single-layer changes that stay feasible; a move's score is
// its cost decrease per unit of normalised capacity it consumes.
inline void improve(const mckp& p, std::vector<std::size_t>& x) {
  const std::size_t R = p.rows;
  auto use = usage(p, x);
  for (int it = 0; it < 64; ++it) {
    double best_score = 0.0;
    std::size_t bg = 0, bo = 0;
    bool found = false;
    for (std::size_t g = 0; g < p.groups(); ++g) {
      const std::size_t cur = x[g];
      for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) {
        const double dc = p.cost[o] - p.cost[cur];
        if (!(dc < 0.0)) continue;
        bool fits = true;
        double consume = 1e-300;
        for (std::size_t r = 0; r < R && fits; ++r) {
          const double d = p.a(o, r) - p.a(cur, r);
          fits = use[r] + d <= p.cap[r];
          consume += std::max(0.0, d) / (p.cap[r] > 0.0 ? p.cap[r] : 1.0);
        }
        if (!fits) continue;
        const double score = dc / consume;
        if (!found || score < best_score) {
          found = true;
          best_score = score;
          bg = g;
          bo = o;
        }
      }
    }
    if (!found) return;
    for (std::size_t r = 0; r < R; ++r) use[r] += p.a(bo, r) - p.a(x[bg], r);
    x[bg] = bo;
  }
}

}  // namespace adaquant::detail
