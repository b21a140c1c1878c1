#pragma once
// What the search has found and proven so far, shared by every phase: the incumbent, the least
// bound of every region discarded without an incumbent inside it, the node count and the limits.

#include <adaquant/bitalloc/lp_bound.hpp>
#include <adaquant/bitalloc/problem.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace adaquant::detail {

struct mckp_limits {
  std::uint64_t node_limit = 0;
  double time_limit = inf;
  double rel_gap = 1e-9;
  double abs_gap = 0.0;
  // Window search (neighbourhood.hpp): windows of min_window core layers, doubled up to 4 x when
  // a sweep finds nothing; 0 = none (its own sub-problems).
  std::size_t min_window = 32;
};

struct mckp_outcome {
  bool infeasible = false;  // proven: no choice meets every row
  allocation_status status = allocation_status::no_solution;
  std::vector<std::uint32_t> choice;  // per group: the chosen option's label
  double objective = inf;
  double lower_bound = -inf;
  std::uint64_t nodes = 0;
};

struct search_progress {
  explicit search_progress(const mckp_limits& limits)
      : lim(limits), start(std::chrono::steady_clock::now()) {}

  mckp_limits lim;
  std::chrono::steady_clock::time_point start;
  double ub = inf;                  // incumbent cost
  std::vector<std::uint32_t> best;  // incumbent: labels per group
  double pruned_min = inf;          // smallest bound of any discarded region
  double root_lb = -inf;
  std::uint64_t nodes = 0;

  // A bound within eps of the incumbent cannot improve it by more than the requested gap.
  [[nodiscard]] double eps() const {
    return ub < inf ? std::max(lim.abs_gap, lim.rel_gap * std::fabs(ub)) : 0.0;
  }

  // Remembers a region's bound when its discard is part of the proof.
  void discard(double bound) { pruned_min = std::min(pruned_min, bound); }

  // The outcome when the search stops: complete = nothing is left open except regions whose least
  // bound is open_min.
  [[nodiscard]] mckp_outcome finish(bool complete, double open_min = inf) const {
    mckp_outcome out;
    out.nodes = nodes;
    if (ub == inf) {
      out.infeasible = complete;
      out.lower_bound = std::max(root_lb, std::min(pruned_min, open_min));
      return out;
    }
    out.choice = best;
    out.objective = ub;
    double lb = std::min({ub, pruned_min, open_min});
    lb = std::max(lb, root_lb);
    out.lower_bound = std::min(lb, ub);
    out.status =
        (ub - out.lower_bound <= eps()) ? allocation_status::optimal : allocation_status::gap;
    return out;
  }

  // Takes choice x (option indices of p, one per group) as the incumbent if it meets every row and
  // is cheaper; sums are recomputed here, so callers may offer approximate candidates.
  void offer(const mckp& p, const std::vector<std::size_t>& x) {
    const std::size_t R = p.rows;
    double c = 0.0;
    std::vector<double> use(R, 0.0);
    for (std::size_t g = 0; g < x.size(); ++g) {
      c += p.cost[x[g]];
      for (std::size_t r = 0; r < R; ++r) use[r] += p.a(x[g], r);
    }
    for (std::size_t r = 0; r < R; ++r)
      if (!(use[r] <= p.cap[r])) return;
    if (c < ub) accept(p, x, c);
  }

  // Takes x with cost c as the incumbent without re-checking it.
  void accept(const mckp& p, const std::vector<std::size_t>& x, double c) {
    ub = c;
    best.resize(x.size());
    for (std::size_t g = 0; g < x.size(); ++g) best[g] = p.label[x[g]];
  }

  [[nodiscard]] bool time_up() const {
    if (!(lim.time_limit < inf)) return false;
    const std::chrono::duration<double> el = std::chrono::steady_clock::now() - start;
    return el.count() >= lim.time_limit;
  }

  // The node limit, or the time limit checked every 1024 nodes.
  [[nodiscard]] bool out_of_budget() const {
    if (lim.node_limit != 0 && nodes >= lim.node_limit) return true;
    if (lim.time_limit < inf && (nodes & 1023u) == 0) {
      const std::chrono::duration<double> el = std::chrono::steady_clock::now() - start;
      if (el.count() >= lim.time_limit) return true;
    }
    return false;
  }
};

}  // namespace adaquant::detail
