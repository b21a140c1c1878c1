#pragma once
// Exact bit allocation: minimize_loss and maximize_saving solve the multiple-choice knapsack of
// problem.hpp. Both become one internal form: minimise sum_g c_{x_g} subject to
// sum_g a_{x_g,r} <= cap_r for every row r with a finite budget (rows scaled by powers of two,
// which is exact). The phases live in bitalloc/solver/, in the order they run:
//
//   1. Reductions that keep every optimum (reduce.hpp): an option that cannot fit beside the
//      lightest choice of every other layer goes (until stable); an option no cheaper and no
//      lighter in any row than another of its layer goes.
//   2. Root bound (mckp_solver.hpp, lp_bound.hpp): the Lagrangian dual, for lambda >= 0
//        L(lambda) = sum_g min_{o in g} (c_o + lambda . a_o) - lambda . cap  <=  optimum,
//      maximised exactly (= the LP relaxation) for one row, by the greedy over each layer's lower
//      convex hull, and for two rows, by cutting planes over lambda_2; three or more rows use
//      subgradient ascent (valid, possibly weaker).
//   3. Incumbents (incumbent.hpp): one row, the LP's greedy rounding; several rows, the
//      Lagrangian minimiser repaired to feasibility (three or more: also at lambda = 0); each
//      polished by best-improvement single-layer moves.
//   4. Reduced-cost fixing (reduce.hpp): option o of layer g lifts L by
//      (c_o + lambda . a_o) - min_{o' in g} (c_o' + lambda . a_o'); when that reaches the
//      incumbent, o goes. Repeated while it removes options (at most 8 rounds), each round
//      followed by step 1's fit reduction and a new bound: re-maximised on the reduced problem
//      (one row, with a new incumbent; two rows' first round), else L at the same lambda.
//   5. Beam pass (bounded_search.hpp): step 6 with the most ambiguous layers first and only the
//      64 states of least bound kept per stage, for a better incumbent; then step 4 again.
//      Several rows: window search (neighbourhood.hpp), a large-neighbourhood search. Every
//      layer keeps its incumbent option except a window of core layers (32, doubled up to 128
//      when a sweep finds nothing; at most 6 sweeps); the window's sub-problem is solved by this
//      solver under a cap of 2^17 nodes (at most node_limit), and each improving sweep is
//      followed by step 4. Sub-problems only propose incumbents; their nodes are not counted.
//   6. Exact bounded search: a stage-wise dynamic program over the core (the layers with more
//      than one option left), one layer per stage, clear-cut layers (largest gap between their
//      two best options priced by lambda) first. A state is a partial choice (cost c, use u of
//      every row). A child is dropped when it cannot fit beside the lightest completion or its
//      bound reaches the incumbent; with one or two rows, states no better in cost and every row
//      than another are dropped too. A child's bound is the larger of its parent's and the best
//      bound family's (bound_family.hpp): for a row q,
//        c + F_q(cap_q - u_q) + sum_{r != q} lambda_r (u_r - cap_r),
//      F_q being the exact LP of the remaining layers on row q with the other rows priced by
//      lambda; q = 0, and q = 1 too with two rows. Greedy completions of the best state on about
//      64 of the stages tighten the incumbent.
//   7. Two rows: meet in the middle (meet_in_middle.hpp). The Pareto set of completions of the
//      last core layers is built backwards while it stays small; the stages of step 6 stop at
//      its first layer and complete every state exactly by a 2-D dominance query.
//
// The bound of everything discarded is remembered, so lower_bound is proven even when a limit
// stops the search (status gap). A node is a state created by the exact search (or a point of
// step 7's set): with node_limit a run is reproducible bit for bit; time_limit_seconds is checked
// every 1024 nodes or so (per stage in the beam pass); 2^24 states act as a node limit.

#include <adaquant/bitalloc/problem.hpp>
#include <adaquant/bitalloc/solver/solve_rows.hpp>
#include <adaquant/core/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace adaquant {

// The paper's Eq. 5: minimise the total loss increase subject to sum_l a_r[l][x_l] <= budgets[r]
// for every resource r (one budget per problem resource; +infinity leaves a resource free).
// Throws errc::infeasible, stating the smallest achievable value of each budget, when no choice
// meets them; see problem.hpp for the other errors and for the tolerances.
[[nodiscard]] inline bit_allocation_result minimize_loss(
    const bit_allocation_problem& problem, std::span<const double> budgets,
    const bit_allocation_options& options = {}) {
  constexpr std::string_view fn = "minimize_loss";
  validate(problem, fn);
  detail::check_budgets(problem, budgets, fn, "budgets");
  detail::validate_options(options, fn);
  std::vector<double> cost;
  std::vector<detail::budget_row> rows(problem.num_resources());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    rows[r].name = problem.resource_names[r];
    rows[r].budget = budgets[r];
  }
  for (const auto& layer : problem.layers)
    for (const auto& o : layer.options) {
      cost.push_back(o.loss_delta);
      for (std::size_t r = 0; r < rows.size(); ++r) rows[r].values.push_back(o.resources[r]);
    }
  return detail::solve_rows(problem, cost, rows, options, fn, "budgets");
}

[[nodiscard]] inline bit_allocation_result minimize_loss(
    const bit_allocation_problem& problem, std::initializer_list<double> budgets,
    const bit_allocation_options& options = {}) {
  return minimize_loss(problem, std::span<const double>(budgets.begin(), budgets.size()), options);
}

// The dual form: maximise the weighted resource saving sum_r weights[r] * (ref_r - total_r),
// where ref is each layer's most expensive option, subject to a total loss increase of at most
// max_loss_delta and optionally to per-resource budgets (empty = none). Equivalently it minimises
// sum_r weights[r] * total_r; result.objective is that weighted total and result.saving the saving.
[[nodiscard]] inline bit_allocation_result maximize_saving(
    const bit_allocation_problem& problem, double max_loss_delta, std::span<const double> weights,
    std::span<const double> budgets = {}, const bit_allocation_options& options = {}) {
  constexpr std::string_view fn = "maximize_saving";
  validate(problem, fn);
  if (!(!std::isnan(max_loss_delta)))
    detail::fail(errc::non_finite, "maximize_saving: max_loss_delta", "must not be NaN");
  if (!(max_loss_delta >= 0.0))
    detail::fail(errc::invalid_argument, "maximize_saving: max_loss_delta",
                 "must be >= 0, got " + detail::format_number(max_loss_delta));
  if (!(weights.size() == problem.num_resources()))
    detail::fail(errc::shape_mismatch, "maximize_saving: weights",
                 "expected " + std::to_string(problem.num_resources()) + " weights, got " +
                     std::to_string(weights.size()));
  bool any = false;
  for (std::size_t r = 0; r < weights.size(); ++r) {
    const std::string at = "maximize_saving: weights[" + std::to_string(r) + "]";
    if (!(std::isfinite(weights[r])))
      detail::fail(errc::non_finite, at,
                   "must be finite, got " + detail::format_number(weights[r]));
    if (!(weights[r] >= 0.0))
      detail::fail(errc::invalid_argument, at,
                   "must be >= 0, got " + detail::format_number(weights[r]));
    any = any || weights[r] > 0.0;
  }
  if (!any)
    detail::fail(errc::invalid_argument, "maximize_saving: weights", "at least one must be > 0");
  std::vector<double> none;
  if (budgets.empty()) {
    none.assign(problem.num_resources(), detail::inf);
    budgets = none;
  }
  detail::check_budgets(problem, budgets, fn, "budgets");
  detail::validate_options(options, fn);

  std::vector<double> cost;
  std::vector<detail::budget_row> rows(1 + problem.num_resources());
  rows[0].name = "loss_delta";
  rows[0].budget = max_loss_delta;
  for (std::size_t r = 0; r < problem.num_resources(); ++r) {
    rows[r + 1].name = problem.resource_names[r];
    rows[r + 1].budget = budgets[r];
  }
  double reference = 0.0;
  for (const auto& layer : problem.layers) {
    double mx = 0.0;
    for (const auto& o : layer.options) {
      double c = 0.0;
      for (std::size_t r = 0; r < weights.size(); ++r) c += weights[r] * o.resources[r];
      cost.push_back(c);
      mx = std::max(mx, c);
      rows[0].values.push_back(o.loss_delta);
      for (std::size_t r = 0; r < problem.num_resources(); ++r)
        rows[r + 1].values.push_back(o.resources[r]);
    }
    reference += mx;
  }
  auto res = detail::solve_rows(problem, cost, rows, options, fn, "max_loss_delta/budgets");
  if (res.status != allocation_status::no_solution) res.saving = reference - res.objective;
  return res;
}

[[nodiscard]] inline bit_allocation_result maximize_saving(
    const bit_allocation_problem& problem, double max_loss_delta,
    std::initializer_list<double> weights, std::initializer_list<double> budgets = {},
    const bit_allocation_options& options = {}) {
  return maximize_saving(problem, max_loss_delta,
                         std::span<const double>(weights.begin(), weights.size()),
                         std::span<const double>(budgets.begin(), budgets.size()), options);
}

}  // namespace adaquant
