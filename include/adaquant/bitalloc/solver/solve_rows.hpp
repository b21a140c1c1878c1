#pragma once
// From the caller's problem to the internal knapsack and back: argument checks, budget rows in
// the caller's units (scaled by powers of two, with the feasibility slack), infeasibility
// messages, and the result's totals recomputed from the caller's data.

#include <adaquant/bitalloc/lp_bound.hpp>
#include <adaquant/bitalloc/problem.hpp>
#include <adaquant/bitalloc/solver/mckp_solver.hpp>
#include <adaquant/bitalloc/solver/progress.hpp>
#include <adaquant/core/error.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace adaquant::detail {

inline void validate_options(const bit_allocation_options& o, std::string_view fn) {
  const std::string f(fn);
  if (!(std::isfinite(o.relative_gap) && o.relative_gap >= 0.0))
    fail(std::isnan(o.relative_gap) ? errc::non_finite : errc::invalid_argument,
         f + ": options.relative_gap",
         "must be finite and >= 0, got " + format_number(o.relative_gap));
  if (!(std::isfinite(o.absolute_gap) && o.absolute_gap >= 0.0))
    fail(std::isnan(o.absolute_gap) ? errc::non_finite : errc::invalid_argument,
         f + ": options.absolute_gap",
         "must be finite and >= 0, got " + format_number(o.absolute_gap));
  if (!(std::isfinite(o.feasibility_tolerance) && o.feasibility_tolerance >= 0.0 &&
        o.feasibility_tolerance < 1.0))
    fail(std::isnan(o.feasibility_tolerance) ? errc::non_finite : errc::invalid_argument,
         f + ": options.feasibility_tolerance",
         "must be in [0, 1), got " + format_number(o.feasibility_tolerance));
  if (!(o.time_limit_seconds > 0.0))
    fail(std::isnan(o.time_limit_seconds) ? errc::non_finite : errc::invalid_argument,
         f + ": options.time_limit_seconds",
         "must be > 0 (infinity for none), got " + format_number(o.time_limit_seconds));
}

// One constraint row in the caller's units: per-option values in problem order, and its budget.
struct budget_row {
  std::string name;
  std::vector<double> values;
  double budget;
};

inline bit_allocation_result solve_rows(const bit_allocation_problem& prob,
                                        const std::vector<double>& cost,
                                        const std::vector<budget_row>& rows,
                                        const bit_allocation_options& opt, std::string_view fn,
                                        std::string_view budget_arg) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::size_t L = prob.num_layers();
  std::vector<std::size_t> first(L + 1, 0);
  for (std::size_t l = 0; l < L; ++l) first[l + 1] = first[l] + prob.layers[l].options.size();

  // Rows with a finite budget become constraints, scaled by a power of two (exact).
  mckp p;
  std::vector<const budget_row*> active;
  std::vector<double> slack, minsum;
  for (const auto& row : rows) {
    if (row.budget == inf) continue;
    bool integral = row.budget == std::floor(row.budget);
    double maxsum = 0.0, mins = 0.0;
    for (std::size_t l = 0; l < L; ++l) {
      double mx = 0.0, mn = inf;
      for (std::size_t o = first[l]; o < first[l + 1]; ++o) {
        const double v = row.values[o];
        integral = integral && v == std::floor(v);
        mx = std::max(mx, v);
        mn = std::min(mn, v);
      }
      maxsum += mx;
      mins += mn;
    }
    integral = integral && maxsum <= 9007199254740992.0 && row.budget <= 9007199254740992.0;
    active.push_back(&row);
    slack.push_back(integral ? 0.0
                             : opt.feasibility_tolerance * std::max(1.0, std::fabs(row.budget)));
    minsum.push_back(mins);
  }
  auto budgets_text = [&]() {
    std::string s;
    for (std::size_t i = 0; i < active.size(); ++i) {
      if (i) s += "; ";
      s += active[i]->name + " <= " + format_number(active[i]->budget) + " (smallest achievable " +
           format_number(minsum[i]) + ")";
    }
    return s;
  };
  {
    std::string bad;
    for (std::size_t i = 0; i < active.size(); ++i)
      if (!(minsum[i] <= active[i]->budget + slack[i])) {
        if (!bad.empty()) bad += ", ";
        bad += "budget " + format_number(active[i]->budget) + " for " + active[i]->name +
               " is below the smallest achievable " + format_number(minsum[i]);
      }
    if (!bad.empty())
      fail(errc::infeasible, std::string(fn) + ": " + std::string(budget_arg),
           bad + ". Smallest achievable value of each budget: " + budgets_text());
  }

  const std::size_t R = active.size();
  p.rows = R;
  p.begin = first;
  p.cost = cost;
  p.label.resize(first[L]);
  for (std::size_t l = 0; l < L; ++l)
    for (std::size_t o = first[l]; o < first[l + 1]; ++o)
      p.label[o] = static_cast<std::uint32_t>(o - first[l]);
  p.res.resize(first[L] * R);
  p.cap.resize(R);
  for (std::size_t r = 0; r < R; ++r) {
    const double b = active[r]->budget;
    const double scale = b > 0.0 ? std::ldexp(1.0, std::ilogb(b)) : 1.0;
    p.cap[r] = (b + slack[r]) / scale;
    for (std::size_t o = 0; o < first[L]; ++o) p.res[o * R + r] = active[r]->values[o] / scale;
  }

  mckp_limits lim;
  lim.node_limit = opt.node_limit;
  lim.time_limit = opt.time_limit_seconds;
  lim.rel_gap = opt.relative_gap;
  lim.abs_gap = opt.absolute_gap;
  auto outcome = mckp_solver(std::move(p), lim).run();
  if (outcome.infeasible)
    fail(errc::infeasible, std::string(fn) + ": " + std::string(budget_arg),
         "no choice meets all budgets together, although each is achievable alone. Smallest "
         "achievable value of each budget: " +
             budgets_text());

  bit_allocation_result res;
  res.status = outcome.status;
  res.nodes = outcome.nodes;
  res.lower_bound = outcome.lower_bound;
  res.resources.assign(prob.num_resources(), 0.0);
  if (outcome.status != allocation_status::no_solution) {
    res.choice.resize(L);
    res.objective = 0.0;
    for (std::size_t l = 0; l < L; ++l) {
      const std::size_t o = outcome.choice[l];
      res.choice[l] = o;
      const auto& op = prob.layers[l].options[o];
      res.objective += cost[first[l] + o];
      res.loss_delta += op.loss_delta;
      for (std::size_t r = 0; r < prob.num_resources(); ++r) res.resources[r] += op.resources[r];
    }
    res.lower_bound = std::min(res.lower_bound, res.objective);
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

inline void check_budgets(const bit_allocation_problem& p, std::span<const double> budgets,
                          std::string_view fn, std::string_view arg) {
  const std::string w = std::string(fn) + ": " + std::string(arg);
  if (!(budgets.size() == p.num_resources()))
    fail(errc::shape_mismatch, w,
         "expected " + std::to_string(p.num_resources()) +
             " budgets (one per resource; infinity for none), got " +
             std::to_string(budgets.size()));
  for (std::size_t r = 0; r < budgets.size(); ++r) {
    const std::string at = w + "[" + std::to_string(r) + "] (" + p.resource_names[r] + ")";
    if (!(!std::isnan(budgets[r]))) fail(errc::non_finite, at, "must not be NaN");
    if (!(budgets[r] >= 0.0))
      fail(errc::invalid_argument, at, "must be >= 0, got " + format_number(budgets[r]));
  }
}

}  // namespace adaquant::detail
