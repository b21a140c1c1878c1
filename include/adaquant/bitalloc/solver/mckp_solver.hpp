#pragma once
// The solver's driver: reductions, root bound and incumbents, reduced-cost fixing, the beam pass,
// then the exact bounded search. The method is described once, in bitalloc/solver.hpp.

#include <adaquant/bitalloc/lp_bound.hpp>
#include <adaquant/bitalloc/solver/bounded_search.hpp>
#include <adaquant/bitalloc/solver/incumbent.hpp>
#include <adaquant/bitalloc/solver/neighbourhood.hpp>
#include <adaquant/bitalloc/solver/progress.hpp>
#include <adaquant/bitalloc/solver/reduce.hpp>

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace adaquant::detail {

// Multipliers and their Lagrangian bound on the current problem: the exact LP for one and two
// rows, subgradient ascent for more. Builds incumbents from the LP's rounding (one row, always)
// or, with `heuristics`, from the Lagrangian choices repaired to feasibility (several rows).
inline double root_bound(const mckp& p, search_progress& pr, std::vector<double>& lambda,
                         bool heuristics) {
  const std::size_t R = p.rows;
  if (R == 1) {
    lp1_workspace ws;
    sort_by_weight(p, 0, ws);
    auto lp = lp_one_row(
        p, 0, p.cap[0], [&](std::size_t o) { return p.cost[o]; }, ws);
    lambda[0] = lp.lambda;
    std::vector<std::size_t> x = lp_greedy_rounding(p, lp, ws);
    improve(p, x);
    pr.offer(p, x);
    return lp.value;
  }
  multipliers m;
  if (R == 2) {
    m = lagrange_two_rows(p);
  } else {
    if (heuristics) {
      std::vector<double> zero(R, 0.0);
      std::vector<std::size_t> x;
      lagrangian(p, zero, &x);
      if (repair(p, x)) {
        improve(p, x);
        pr.offer(p, x);
      }
    }
    double target = pr.ub;
    if (target == inf) {  // no incumbent: every layer's most expensive option
      target = 0.0;
      for (std::size_t g = 0; g < p.groups(); ++g) {
        double mx = 0.0;
        for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) mx = std::max(mx, p.cost[o]);
        target += mx;
      }
    }
    m = lagrange_subgradient(p, target);
  }
  lambda = m.lambda;
  if (heuristics) {
    std::vector<std::size_t> x;
    lagrangian(p, lambda, &x);
    if (repair(p, x)) {
      improve(p, x);
      pr.offer(p, x);
    }
  }
  return m.bound;
}

class mckp_solver {
 public:
  static constexpr int max_window_sweeps = 6;  // window search: at most this many sweeps

  mckp_solver(mckp problem, const mckp_limits& limits) : p_(std::move(problem)), pr_(limits) {}

  mckp_outcome run() {
    const std::size_t R = p_.rows;
    if (!fit_reduce(p_)) {
      mckp_outcome out;
      out.infeasible = true;
      return out;
    }
    remove_dominated(p_);
    if (R == 0) {  // no rows: after dominance each layer keeps exactly its cheapest option
      std::vector<std::size_t> x(p_.groups());
      for (std::size_t g = 0; g < p_.groups(); ++g) x[g] = p_.begin[g];
      pr_.offer(p_, x);
      return pr_.finish(true);
    }

    std::vector<double> lambda(R, 0.0);
    double bound = root_bound(p_, pr_, lambda, true);
    pr_.root_lb = bound;
    // Reduced-cost fixing against the root heuristic's incumbent, a beam search for a better
    // one, fixing again; with several rows, window sweeps (each followed by fixing) that double
    // their window when a sweep finds nothing (the first size in ambiguity order, the wider ones
    // in resource-range order); then the exact search.
    const std::size_t max_window = 4 * pr_.lim.min_window;
    std::size_t window = pr_.lim.min_window;
    for (int pass = 0;; ++pass) {
      for (int round = 0; round < 8 && pr_.ub < inf; ++round) {
        if (pr_.ub - bound <= pr_.eps()) return pr_.finish(true, bound);
        if (reduced_cost_fix(p_, lambda, bound, pr_) == 0) break;
        if (!fit_reduce(p_)) return pr_.finish(true);  // nothing better than the incumbent remains
        if (R >= 3 || (R == 2 && round >= 1)) {
          bound = lagrangian(p_, lambda);  // same multipliers, reduced problem
          break;
        }
        bound = root_bound(p_, pr_, lambda, false);
      }
      if (pass == 0) {
        bounded_search(p_, pr_, lambda, bound, 64);
        continue;
      }
      if (R < 2 || window == 0) break;
      auto solve = [](mckp sub, const mckp_limits& lim) {
        return mckp_solver(std::move(sub), lim).run();
      };
      while (window <= max_window && pass <= max_window_sweeps &&
             !window_search(p_, pr_, lambda, window, window > pr_.lim.min_window, solve)) {
        window *= 2;
        ++pass;
      }
      if (window > max_window || pass > max_window_sweeps) break;
    }
    return bounded_search(p_, pr_, lambda, bound, 0);
  }

 private:
  mckp p_;
  search_progress pr_;
};

}  // namespace adaquant::detail
