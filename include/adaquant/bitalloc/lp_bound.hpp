#pragma once
// Lower bounds for the multiple-choice knapsack behind bit allocation.
//
// Internal form (minimisation): groups g (layers), each option o has a cost c_o and R resources
// a_o; pick one option per group so that sum a_r <= cap_r for every row r.
//
// Lagrangian bound: for every lambda >= 0,
//   L(lambda) = sum_g min_{o in g} (c_o + lambda . a_o) - lambda . cap  <=  optimum   (weak
//   duality)
// Each group's choice set relaxes to a simplex, which has integral vertices, so max_lambda L equals
// the LP relaxation's value. One row: the LP is solved greedily on the lower convex hull of each
// group's (a_o, c_o) points, taking hull segments by decreasing efficiency -dc/da until the
// capacity runs out (Sinha & Zoltners); the break segment's efficiency is the optimal lambda.
// Two rows: max over lambda_2 of the one-row LP in lambda_1 (a concave, piecewise-linear function),
// found by a safeguarded cutting-plane search on its supergradient. More rows: subgradient ascent,
// which gives a valid (possibly weaker) bound.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace adaquant::detail {

struct mckp {
  std::size_t rows = 0;
  std::vector<std::size_t> begin{0};  // group g owns options [begin[g], begin[g+1])
  std::vector<double> cost;
  std::vector<double> res;           // option-major: res[o * rows + r]
  std::vector<std::uint32_t> label;  // the option's index in the caller's layer
  std::vector<double> cap;           // capacities, feasibility slack included

  [[nodiscard]] std::size_t groups() const noexcept { return begin.size() - 1; }
  [[nodiscard]] std::size_t options() const noexcept { return cost.size(); }
  [[nodiscard]] double a(std::size_t o, std::size_t r) const noexcept { return res[o * rows + r]; }
};

inline constexpr double inf = std::numeric_limits<double>::infinity();

// Keeps the options with keep[o] != 0; the group structure is preserved (groups may become empty).
inline void compact(mckp& p, const std::vector<char>& keep) {
  std::size_t w = 0;
  std::size_t start = 0;
  for (std::size_t g = 0; g < p.groups(); ++g) {
    const std::size_t end = p.begin[g + 1];
    for (std::size_t o = start; o < end; ++o) {
      if (!keep[o]) continue;
      p.cost[w] = p.cost[o];
      p.label[w] = p.label[o];
      for (std::size_t r = 0; r < p.rows; ++r) p.res[w * p.rows + r] = p.res[o * p.rows + r];
      ++w;
    }
    start = end;
    p.begin[g + 1] = w;
  }
  p.cost.resize(w);
  p.label.resize(w);
  p.res.resize(w * p.rows);
}

// sum_g min_o (c_o + lambda . a_o) - lambda . cap. Optionally returns the minimisers (ties go to
// the option with the smaller resource sum, then the lower index) and their resource use.
inline double lagrangian(const mckp& p, std::span<const double> lambda,
                         std::vector<std::size_t>* argmin = nullptr) {
  const std::size_t R = p.rows;
  double total = 0.0;
  if (argmin) argmin->assign(p.groups(), 0);
  for (std::size_t g = 0; g < p.groups(); ++g) {
    double best = inf;
    double best_use = inf;
    std::size_t arg = p.begin[g];
    for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) {
      double v = p.cost[o];
      double use = 0.0;
      for (std::size_t r = 0; r < R; ++r) {
        v += lambda[r] * p.a(o, r);
        use += p.a(o, r);
      }
      if (v < best || (v == best && use < best_use)) {
        best = v;
        best_use = use;
        arg = o;
      }
    }
    total += best;
    if (argmin) (*argmin)[g] = arg;
  }
  for (std::size_t r = 0; r < R; ++r) total -= lambda[r] * p.cap[r];
  return total;
}

struct hull_segment {
  double eff;  // -dc/da > 0
  double da;
  std::uint32_t group;
  std::uint32_t from, to;  // option indices
};

// One step of Andrew's monotone chain for a lower convex hull over (weight, cost) points fed by
// increasing weight; the group's hull occupies hull[base..]. A point that is not strictly cheaper
// than the last hull point is dominated and skipped.
template <class Cost, class Weight>
void hull_push(std::vector<std::size_t>& hull, std::size_t base, std::size_t o, Cost& cost,
               Weight& weight) {
  const double c = cost(o), w = weight(o);
  if (hull.size() > base && !(c < cost(hull.back()))) return;
  while (hull.size() >= base + 2) {
    const std::size_t h0 = hull[hull.size() - 2], h1 = hull.back();
    const double c0 = cost(h0), w0 = weight(h0), c1 = cost(h1), w1 = weight(h1);
    // keep h1 only if it lies strictly below the chord h0 -> o (slopes strictly increasing)
    if ((c1 - c0) * (w - w1) < (c - c1) * (w1 - w0)) break;
    hull.pop_back();
  }
  hull.push_back(o);
}

// The lower hull of one group's options sorted[b..e) (ordered by weight) into hull (cleared first).
// Equal weights may be out of cost order after a cost shift: the cheapest of each run is fed.
template <class Cost, class Weight>
void group_hull(std::vector<std::size_t>& hull, const std::vector<std::size_t>& sorted,
                std::size_t b, std::size_t e, Cost& cost, Weight& weight) {
  hull.clear();
  for (std::size_t i = b; i < e;) {
    std::size_t j = i, best = sorted[i];
    while (j < e && weight(sorted[j]) == weight(sorted[i])) {
      if (cost(sorted[j]) < cost(best)) best = sorted[j];
      ++j;
    }
    hull_push(hull, 0, best, cost, weight);
    i = j;
  }
}

struct lp1_result {
  bool feasible = false;
  double lambda = 0.0;  // optimal multiplier: efficiency of the break segment (0 if none)
  double value = -inf;  // L(lambda) for the one-row problem with costs cost(o)
  // LP primal: group g sits at vertex x[g], except the break group which moves a fraction theta
  // from x[brk_group] to brk_to. x alone is the greedy's feasible integral rounding.
  std::vector<std::size_t> x;
  std::size_t brk_group = static_cast<std::size_t>(-1);
  std::size_t brk_to = 0;
  double theta = 0.0;
};

struct lp1_workspace {
  std::vector<std::size_t> sorted;  // options of every group, by weight within the group
  std::vector<std::size_t> hull;
  std::vector<hull_segment> segs;
};

// Sorts each group's options by (weight on `row`, cost, index) into ws.sorted.
inline void sort_by_weight(const mckp& p, std::size_t row, lp1_workspace& ws) {
  ws.sorted.resize(p.options());
  for (std::size_t o = 0; o < p.options(); ++o) ws.sorted[o] = o;
  for (std::size_t g = 0; g < p.groups(); ++g)
    std::sort(ws.sorted.begin() + static_cast<std::ptrdiff_t>(p.begin[g]),
              ws.sorted.begin() + static_cast<std::ptrdiff_t>(p.begin[g + 1]),
              [&](std::size_t i, std::size_t j) {
                const double wi = p.a(i, row), wj = p.a(j, row);
                if (wi != wj) return wi < wj;
                if (p.cost[i] != p.cost[j]) return p.cost[i] < p.cost[j];
                return i < j;
              });
}

// Exact LP relaxation of the one-row problem (row `row`, capacity `cap`, costs cost(o)); ws.sorted
// must come from sort_by_weight(p, row, ws). Any cost function may be used with that order.
template <class Cost>
lp1_result lp_one_row(const mckp& p, std::size_t row, double cap, Cost&& cost, lp1_workspace& ws) {
  lp1_result out;
  const std::size_t G = p.groups();
  out.x.assign(G, 0);
  ws.segs.clear();
  auto weight = [&](std::size_t o) { return p.a(o, row); };
  double base = 0.0;
  for (std::size_t g = 0; g < G; ++g) {
    group_hull(ws.hull, ws.sorted, p.begin[g], p.begin[g + 1], cost, weight);
    out.x[g] = ws.hull.front();
    base += weight(ws.hull.front());
    for (std::size_t k = 0; k + 1 < ws.hull.size(); ++k) {
      const std::size_t f = ws.hull[k], t = ws.hull[k + 1];
      const double da = weight(t) - weight(f);
      const double dc = cost(f) - cost(t);
      ws.segs.push_back({dc / da, da, static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(f),
                         static_cast<std::uint32_t>(t)});
    }
  }
  double residual = cap - base;
  if (!(residual >= 0.0)) return out;  // even the lightest choice overflows
  out.feasible = true;
  std::stable_sort(ws.segs.begin(), ws.segs.end(),
                   [](const hull_segment& s, const hull_segment& t) { return s.eff > t.eff; });
  for (const auto& s : ws.segs) {
    if (s.da <= residual) {
      residual -= s.da;
      out.x[s.group] = s.to;
    } else {
      out.lambda = s.eff;
      out.brk_group = s.group;
      out.brk_to = s.to;
      out.theta = residual / s.da;
      break;
    }
  }
  double total = 0.0;
  for (std::size_t g = 0; g < G; ++g) {
    double best = inf;
    for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o)
      best = std::min(best, cost(o) + out.lambda * weight(o));
    total += best;
  }
  out.value = total - out.lambda * cap;
  return out;
}

struct multipliers {
  std::vector<double> lambda;
  double bound = -inf;
};

// Two rows: maximise g(t) = max_{l1} L(l1, t) over t = lambda_2 >= 0. g is concave and piecewise
// linear; its supergradient at t is a_2(x*) - cap_2 for the one-row LP optimum x*. The search
// brackets the maximiser and intersects the tangents at the bracket ends (bisecting when that
// stalls), stopping when the tangents' apex is within `rel_tol` of the best value.
inline multipliers lagrange_two_rows(const mckp& p, double rel_tol = 1e-12, int max_evals = 80) {
  lp1_workspace ws;
  sort_by_weight(p, 0, ws);
  struct point {
    double t, g, d, l1;
  };
  auto eval = [&](double t) {
    auto r = lp_one_row(
        p, 0, p.cap[0], [&](std::size_t o) { return p.cost[o] + t * p.a(o, 1); }, ws);
    point pt{t, r.value - t * p.cap[1], 0.0, r.lambda};
    if (!r.feasible) {  // cannot happen after the fit check; make it a hard wall
      pt.g = -inf;
      return pt;
    }
    double use = 0.0;
    for (std::size_t g = 0; g < p.groups(); ++g) use += p.a(r.x[g], 1);
    if (r.brk_group != static_cast<std::size_t>(-1))
      use += r.theta * (p.a(r.brk_to, 1) - p.a(r.x[r.brk_group], 1));
    pt.d = use - p.cap[1];
    return pt;
  };
  point lo = eval(0.0);
  multipliers out{{lo.l1, 0.0}, lo.g};
  if (!(lo.d > 0.0)) return out;  // row 2 is slack at the one-row optimum: t = 0 is optimal
  // Bracket: grow t until the supergradient turns negative.
  double step = 1.0;
  {
    // scale guess: cost range per unit of row-2 resource
    double cmax = 0.0, amax = 0.0;
    for (std::size_t o = 0; o < p.options(); ++o) {
      cmax = std::max(cmax, p.cost[o]);
      amax = std::max(amax, p.a(o, 1));
    }
    if (cmax > 0.0 && amax > 0.0) step = cmax / amax;
  }
  point hi = eval(step);
  int evals = 2;
  while (hi.d > 0.0 && evals < max_evals) {
    if (hi.g > out.bound) out = {{hi.l1, hi.t}, hi.g};
    lo = hi;
    step *= 4.0;
    hi = eval(step);
    ++evals;
  }
  if (hi.g > out.bound) out = {{hi.l1, hi.t}, hi.g};
  if (lo.g > out.bound) out = {{lo.l1, lo.t}, lo.g};
  if (hi.d > 0.0) return out;  // ran out of evaluations; the bound is still valid
  bool last_bisect = false;
  while (evals < max_evals && hi.t - lo.t > 1e-15 * hi.t) {
    if (hi.d == 0.0 || lo.d == 0.0) break;  // a flat piece: its value is the maximum
    double t = (hi.g - lo.g + lo.d * lo.t - hi.d * hi.t) / (lo.d - hi.d);
    const double apex = lo.g + lo.d * (t - lo.t);
    if (apex - out.bound <= rel_tol * std::max(std::fabs(out.bound), 1e-300)) break;
    const double width = hi.t - lo.t;
    if (!(t > lo.t + 1e-3 * width && t < hi.t - 1e-3 * width)) t = 0.5 * (lo.t + hi.t);
    point m = eval(t);
    ++evals;
    if (m.g > out.bound) out = {{m.l1, m.t}, m.g};
    const double before = width;
    if (m.d > 0.0)
      lo = m;
    else if (m.d < 0.0)
      hi = m;
    else
      break;
    if (hi.t - lo.t > 0.5 * before && !last_bisect) {
      // slow shrink: bisect next time
      point b = eval(0.5 * (lo.t + hi.t));
      ++evals;
      if (b.g > out.bound) out = {{b.l1, b.t}, b.g};
      if (b.d > 0.0)
        lo = b;
      else if (b.d < 0.0)
        hi = b;
      else
        break;
      last_bisect = true;
    } else {
      last_bisect = false;
    }
  }
  return out;
}

// Three or more rows: projected subgradient ascent with Polyak steps toward `target` (an upper
// bound, e.g. the incumbent's cost). Deterministic; returns the best multipliers seen.
inline multipliers lagrange_subgradient(const mckp& p, double target, int iters = 300) {
  const std::size_t R = p.rows;
  std::vector<double> lambda(R, 0.0), g(R);
  std::vector<std::size_t> x;
  multipliers best{lambda, -inf};
  double theta = 1.0;
  int stall = 0;
  for (int it = 0; it < iters; ++it) {
    const double L = lagrangian(p, lambda, &x);
    if (L > best.bound) {
      best = {lambda, L};
      stall = 0;
    } else if (++stall >= 8) {
      theta *= 0.5;
      stall = 0;
    }
    if (theta < 1e-7) break;
    double norm = 0.0;
    for (std::size_t r = 0; r < R; ++r) {
      double use = 0.0;
      for (std::size_t k = 0; k < x.size(); ++k) use += p.a(x[k], r);
      g[r] = use - p.cap[r];
      if (lambda[r] == 0.0 && g[r] < 0.0) g[r] = 0.0;
      norm += g[r] * g[r];
    }
    if (norm == 0.0) break;  // x is feasible and complementary: L is the optimum of the LP
    double gap = target - L;
    if (!(gap > 0.0) || !std::isfinite(gap)) gap = std::max(std::fabs(L), 1.0) * 0.01;
    const double step = theta * gap / norm;
    for (std::size_t r = 0; r < R; ++r) lambda[r] = std::max(0.0, lambda[r] + step * g[r]);
  }
  return best;
}

}  // namespace adaquant::detail
