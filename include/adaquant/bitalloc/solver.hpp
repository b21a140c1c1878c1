#pragma once
// Exact bit allocation: branch and bound on the multiple-choice knapsack of problem.hpp.
//
//   1. Reductions that keep every optimum: options that cannot fit beside the lightest choice of
//      every other layer go; options dominated within their layer (no cheaper in loss and no
//      lighter in any resource) go.
//   2. Root bound: the LP relaxation through its Lagrangian dual (lp_bound.hpp): exact for one and
//      two budgets, subgradient ascent (valid but possibly weaker) for more.
//   3. Incumbent: the LP's greedy rounding (one budget) or the Lagrangian choice repaired to
//      feasibility (several), then best-improvement single-layer moves.
//   4. Reduced-cost fixing: an option whose Lagrangian reduced cost lifts the bound above the
//      incumbent cannot improve on it and goes; iterated while the bound improves.
//   5. Depth-first branch and bound over the layers still undecided. One budget: every node
//      re-solves the LP of its free layers (hull greedy) and prices its children by reduced cost.
//      Several budgets: the root multipliers price every node incrementally. Children are explored
//      cheapest bound first; a child that cannot fit beside the lightest completion is skipped.
//
// The bound of every discarded subtree is remembered, so the result's lower_bound is proven even
// when a node or time limit stops the search (status gap). With a node limit the run is fully
// reproducible; a time limit is checked every 1024 nodes.

#include <adaquant/bitalloc/lp_bound.hpp>
#include <adaquant/bitalloc/problem.hpp>
#include <adaquant/core/error.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace adaquant::detail {

struct mckp_limits {
  std::uint64_t node_limit = 0;
  double time_limit = inf;
  double rel_gap = 1e-9;
  double abs_gap = 0.0;
};

struct mckp_outcome {
  bool infeasible = false;  // proven: no choice meets every row
  allocation_status status = allocation_status::no_solution;
  std::vector<std::uint32_t> choice;  // per group: the chosen option's label
  double objective = inf;
  double lower_bound = -inf;
  std::uint64_t nodes = 0;
};

class mckp_solver {
 public:
  mckp_solver(mckp problem, const mckp_limits& limits)
      : p_(std::move(problem)), lim_(limits), start_(std::chrono::steady_clock::now()) {}

  mckp_outcome run() {
    mckp_outcome out;
    const std::size_t R = p_.rows;
    if (!fit_reduce()) {
      out.infeasible = true;
      return out;
    }
    remove_dominated();
    if (R == 0) {  // no rows: after dominance each layer keeps exactly its cheapest option
      std::vector<std::size_t> x(p_.groups());
      for (std::size_t g = 0; g < p_.groups(); ++g) x[g] = p_.begin[g];
      try_incumbent(x);
      return finish(true);
    }

    std::vector<double> lambda(R, 0.0);
    double bound = root_bound(lambda, true);
    root_lb_ = bound;
    // Reduced-cost fixing against the root heuristic's incumbent, a beam search for a better
    // one, fixing again, then the exact search.
    for (int pass = 0; pass < 2; ++pass) {
      for (int round = 0; round < 8 && ub_ < inf; ++round) {
        if (ub_ - bound <= eps()) return finish(true, bound);
        if (rc_fix(lambda, bound) == 0) break;
        if (!fit_reduce()) return finish(true);  // nothing better than the incumbent remains
        if (R >= 3 || (R == 2 && round >= 1)) {
          bound = lagrangian(p_, lambda);  // same multipliers, reduced problem
          break;
        }
        bound = root_bound(lambda, false);
      }
      if (pass == 0) search(lambda, bound, 64);
    }
    return search(lambda, bound, 0);
  }

 private:
  mckp p_;
  mckp_limits lim_;
  std::chrono::steady_clock::time_point start_;
  double ub_ = inf;
  std::vector<std::uint32_t> best_;  // labels per group
  double pruned_min_ = inf;          // smallest bound of any discarded region
  double root_lb_ = -inf;
  std::uint64_t nodes_ = 0;

  [[nodiscard]] double eps() const {
    return ub_ < inf ? std::max(lim_.abs_gap, lim_.rel_gap * std::fabs(ub_)) : 0.0;
  }

  mckp_outcome finish(bool complete, double open_min = inf) {
    mckp_outcome out;
    out.nodes = nodes_;
    if (ub_ == inf) {
      out.infeasible = complete;
      out.lower_bound = std::max(root_lb_, std::min(pruned_min_, open_min));
      return out;
    }
    out.choice = best_;
    out.objective = ub_;
    double lb = std::min({ub_, pruned_min_, open_min});
    lb = std::max(lb, root_lb_);
    out.lower_bound = std::min(lb, ub_);
    out.status =
        (ub_ - out.lower_bound <= eps()) ? allocation_status::optimal : allocation_status::gap;
    return out;
  }

  // Drops options that cannot fit beside the lightest choice of every other group, until stable.
  // Returns false when a row cannot be met or a group runs out of options.
  bool fit_reduce() {
    const std::size_t R = p_.rows, G = p_.groups();
    std::vector<double> minsum(R), gmin(G * R);
    std::vector<char> keep;
    for (;;) {
      std::fill(minsum.begin(), minsum.end(), 0.0);
      for (std::size_t g = 0; g < G; ++g) {
        if (p_.begin[g] == p_.begin[g + 1]) return false;
        for (std::size_t r = 0; r < R; ++r) {
          double m = inf;
          for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o) m = std::min(m, p_.a(o, r));
          gmin[g * R + r] = m;
          minsum[r] += m;
        }
      }
      for (std::size_t r = 0; r < R; ++r)
        if (!(minsum[r] <= p_.cap[r])) return false;
      keep.assign(p_.options(), 1);
      bool removed = false;
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o)
          for (std::size_t r = 0; r < R; ++r)
            if (p_.a(o, r) > gmin[g * R + r] &&
                !(minsum[r] - gmin[g * R + r] + p_.a(o, r) <= p_.cap[r])) {
              keep[o] = 0;
              removed = true;
              break;
            }
      if (!removed) return true;
      compact(p_, keep);
    }
  }

  // Option j goes when another option i of its group is no worse in cost and every row (ties keep
  // the lower index).
  void remove_dominated() {
    const std::size_t R = p_.rows;
    std::vector<char> keep(p_.options(), 1);
    for (std::size_t g = 0; g < p_.groups(); ++g)
      for (std::size_t j = p_.begin[g]; j < p_.begin[g + 1]; ++j)
        for (std::size_t i = p_.begin[g]; i < p_.begin[g + 1] && keep[j]; ++i) {
          if (i == j || !keep[i] || p_.cost[i] > p_.cost[j]) continue;
          bool no_worse = true, better = p_.cost[i] < p_.cost[j];
          for (std::size_t r = 0; r < R && no_worse; ++r) {
            no_worse = p_.a(i, r) <= p_.a(j, r);
            better = better || p_.a(i, r) < p_.a(j, r);
          }
          if (no_worse && (better || i < j)) keep[j] = 0;
        }
    compact(p_, keep);
  }

  void try_incumbent(const std::vector<std::size_t>& x) {
    const std::size_t R = p_.rows;
    double c = 0.0;
    std::vector<double> use(R, 0.0);
    for (std::size_t g = 0; g < x.size(); ++g) {
      c += p_.cost[x[g]];
      for (std::size_t r = 0; r < R; ++r) use[r] += p_.a(x[g], r);
    }
    for (std::size_t r = 0; r < R; ++r)
      if (!(use[r] <= p_.cap[r])) return;
    if (c < ub_) {
      ub_ = c;
      best_.resize(x.size());
      for (std::size_t g = 0; g < x.size(); ++g) best_[g] = p_.label[x[g]];
    }
  }

  [[nodiscard]] std::vector<double> usage(const std::vector<std::size_t>& x) const {
    std::vector<double> use(p_.rows, 0.0);
    for (std::size_t g = 0; g < x.size(); ++g)
      for (std::size_t r = 0; r < p_.rows; ++r) use[r] += p_.a(x[g], r);
    return use;
  }

  // Moves to feasibility: repeatedly applies the single-layer change with the least cost per unit
  // of (capacity-normalised) violation removed. Returns false if it gives up.
  bool repair(std::vector<std::size_t>& x) {
    const std::size_t R = p_.rows;
    auto use = usage(x);
    auto violation = [&](std::size_t r, double u) {
      const double scale = p_.cap[r] > 0.0 ? p_.cap[r] : 1.0;
      return std::max(0.0, u - p_.cap[r]) / scale;
    };
    for (int it = 0; it < 512; ++it) {
      double viol = 0.0;
      for (std::size_t r = 0; r < R; ++r) viol += violation(r, use[r]);
      if (viol == 0.0) return true;
      double best_score = inf;
      std::size_t bg = 0, bo = 0;
      for (std::size_t g = 0; g < p_.groups(); ++g) {
        const std::size_t cur = x[g];
        for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o) {
          if (o == cur) continue;
          double v = 0.0;
          for (std::size_t r = 0; r < R; ++r) v += violation(r, use[r] - p_.a(cur, r) + p_.a(o, r));
          const double red = viol - v;
          if (!(red > 0.0)) continue;
          const double score = (p_.cost[o] - p_.cost[cur]) / red;
          if (score < best_score) {
            best_score = score;
            bg = g;
            bo = o;
          }
        }
      }
      if (best_score == inf) return false;
      for (std::size_t r = 0; r < R; ++r) use[r] += p_.a(bo, r) - p_.a(x[bg], r);
      x[bg] = bo;
    }
    return false;
  }

  // Best-improvement local search over single-layer changes that stay feasible; a move's score is
  // its cost decrease per unit of normalised capacity it consumes.
  void improve(std::vector<std::size_t>& x) {
    const std::size_t R = p_.rows;
    auto use = usage(x);
    for (int it = 0; it < 64; ++it) {
      double best_score = 0.0;
      std::size_t bg = 0, bo = 0;
      bool found = false;
      for (std::size_t g = 0; g < p_.groups(); ++g) {
        const std::size_t cur = x[g];
        for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o) {
          const double dc = p_.cost[o] - p_.cost[cur];
          if (!(dc < 0.0)) continue;
          bool fits = true;
          double consume = 1e-300;
          for (std::size_t r = 0; r < R && fits; ++r) {
            const double d = p_.a(o, r) - p_.a(cur, r);
            fits = use[r] + d <= p_.cap[r];
            consume += std::max(0.0, d) / (p_.cap[r] > 0.0 ? p_.cap[r] : 1.0);
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
      for (std::size_t r = 0; r < R; ++r) use[r] += p_.a(bo, r) - p_.a(x[bg], r);
      x[bg] = bo;
    }
  }

  // Computes multipliers and their Lagrangian bound on the current problem; with `heuristics`
  // also builds incumbents.
  double root_bound(std::vector<double>& lambda, bool heuristics) {
    const std::size_t R = p_.rows;
    if (R == 1) {
      lp1_workspace ws;
      sort_by_weight(p_, 0, ws);
      auto lp = lp_one_row(
          p_, 0, p_.cap[0], [&](std::size_t o) { return p_.cost[o]; }, ws);
      lambda[0] = lp.lambda;
      {
        // greedy: the LP's rounding, then keep taking later hull segments that still fit
        std::vector<std::size_t> x = lp.x;
        auto use = usage(x);
        double residual = p_.cap[0] - use[0];
        std::vector<char> blocked(p_.groups(), 0);
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
        improve(x);
        try_incumbent(x);
      }
      return lp.value;
    }
    multipliers m;
    if (R == 2) {
      m = lagrange_two_rows(p_);
    } else {
      if (heuristics) {
        std::vector<double> zero(R, 0.0);
        std::vector<std::size_t> x;
        lagrangian(p_, zero, &x);
        if (repair(x)) {
          improve(x);
          try_incumbent(x);
        }
      }
      double target = ub_;
      if (target == inf) {
        target = 0.0;
        for (std::size_t g = 0; g < p_.groups(); ++g) {
          double mx = 0.0;
          for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o) mx = std::max(mx, p_.cost[o]);
          target += mx;
        }
      }
      m = lagrange_subgradient(p_, target);
    }
    lambda = m.lambda;
    if (heuristics) {
      std::vector<std::size_t> x;
      lagrangian(p_, lambda, &x);
      if (repair(x)) {
        improve(x);
        try_incumbent(x);
      }
    }
    return m.bound;
  }

  // Reduced-cost fixing with multipliers lambda whose Lagrangian value on the current problem is
  // `bound`. Returns the number of options removed.
  std::size_t rc_fix(const std::vector<double>& lambda, double bound) {
    const std::size_t R = p_.rows;
    const double cut = ub_ - eps();
    std::vector<char> keep(p_.options(), 1);
    std::vector<double> val;
    std::size_t removed = 0;
    for (std::size_t g = 0; g < p_.groups(); ++g) {
      val.clear();
      double mn = inf;
      for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o) {
        double v = p_.cost[o];
        for (std::size_t r = 0; r < R; ++r) v += lambda[r] * p_.a(o, r);
        val.push_back(v);
        mn = std::min(mn, v);
      }
      for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o) {
        const double b = bound + (val[o - p_.begin[g]] - mn);
        if (b >= cut) {
          keep[o] = 0;
          pruned_min_ = std::min(pruned_min_, b);
          ++removed;
        }
      }
    }
    if (removed) compact(p_, keep);
    return removed;
  }

  [[nodiscard]] bool time_up() const {
    if (!(lim_.time_limit < inf)) return false;
    const std::chrono::duration<double> el = std::chrono::steady_clock::now() - start_;
    return el.count() >= lim_.time_limit;
  }

  bool out_of_budget() const {
    if (lim_.node_limit != 0 && nodes_ >= lim_.node_limit) return true;
    if (lim_.time_limit < inf && (nodes_ & 1023u) == 0) {
      const std::chrono::duration<double> el = std::chrono::steady_clock::now() - start_;
      if (el.count() >= lim_.time_limit) return true;
    }
    return false;
  }

  // Bounded dynamic programming over the undecided layers (the "core"), one layer per stage:
  // a state is a partial choice (cost, resource use); states dominated in every coordinate are
  // merged away (one and two rows), and a state whose bound cannot beat the incumbent is dropped.
  // The bound of a state is exact LP on row 0 for the remaining layers, with rows >= 1 priced by
  // the root multipliers:
  //   bound = c + F_k(cap_0 - a_0) - sum_{r>=1} lambda_r (cap_r - a_r),
  // F_k(x) = LP min of sum (c_o + sum_{r>=1} lambda_r a_{o,r}) over layers k.. with row 0 <= x.
  // (For one row this is the state's exact LP bound.) Each stage also completes its most
  // promising state greedily to tighten the incumbent early.
  // beam > 0 runs only the heuristic beam pass (improving the incumbent); beam == 0 is exact.
  mckp_outcome search(const std::vector<double>& lambda, double root_bound_value,
                      std::size_t beam) {
    const std::size_t R = p_.rows, G = p_.groups();
    std::vector<std::uint32_t> fixed_label(G, 0);
    std::vector<std::size_t> core;
    double c0 = 0.0;
    std::vector<double> a0(R, 0.0);
    for (std::size_t g = 0; g < G; ++g) {
      if (p_.begin[g + 1] - p_.begin[g] == 1) {
        const std::size_t o = p_.begin[g];
        fixed_label[g] = p_.label[o];
        c0 += p_.cost[o];
        for (std::size_t r = 0; r < R; ++r) a0[r] += p_.a(o, r);
      } else {
        core.push_back(g);
      }
    }
    if (core.empty()) {
      std::vector<std::size_t> x(G);
      for (std::size_t g = 0; g < G; ++g) x[g] = p_.begin[g];
      try_incumbent(x);
      return finish(true);
    }
    // Priced cost c'_o = c_o + sum_{r>=1} lambda_r a_{o,r}; layers ordered most ambiguous first.
    std::vector<double> priced(p_.options());
    std::vector<double> ambiguity(G, inf);
    for (std::size_t g = 0; g < G; ++g) {
      double mn = inf;
      std::vector<double> full;
      for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o) {
        double v = p_.cost[o];
        for (std::size_t r = 1; r < R; ++r) v += lambda[r] * p_.a(o, r);
        priced[o] = v;
        full.push_back(v + lambda[0] * p_.a(o, 0));
        mn = std::min(mn, full.back());
      }
      double second = inf;
      bool seen = false;
      for (double v : full) {
        if (v == mn && !seen)
          seen = true;
        else
          second = std::min(second, v - mn);
      }
      ambiguity[g] = second;
    }
    std::stable_sort(core.begin(), core.end(), [&](std::size_t i, std::size_t j) {
      // beam: ambiguous layers first (room to steer early); exact pass: clear-cut
      // layers first, so the state set branches only in the last stages
      return beam == 0 ? ambiguity[i] > ambiguity[j] : ambiguity[i] < ambiguity[j];
    });
    const std::size_t K = core.size();

    // suffix_min[k*R + r]: lightest completion of core layers k.. on row r.
    std::vector<double> suffix_min((K + 1) * R, 0.0);
    for (std::size_t k = K; k-- > 0;) {
      const std::size_t g = core[k];
      for (std::size_t r = 0; r < R; ++r) {
        double m = inf;
        for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o) m = std::min(m, p_.a(o, r));
        suffix_min[k * R + r] = suffix_min[(k + 1) * R + r] + m;
      }
    }
    // Bound families. Family (q, mu): row q kept exact through F, every other row r priced by
    // mu_r; any mu >= 0 gives a valid bound and the state takes the best family. Family 0 is
    // (0, root lambda); with two rows a second family keeps row 1 exact instead. (Families with
    // scaled multipliers were tried and did not pay for their cost on synthetic networks.)
    struct seg {
      double eff, da, dc;
      std::size_t k;
      std::size_t from, to;
    };
    struct family {
      std::size_t q;
      std::vector<double> mu;
      double penalty_cap = 0.0;  // sum_{r != q} mu_r cap_r
      std::vector<double> priced;
      std::vector<seg> segs;
      std::vector<std::size_t> hull_start;
      // Fenwick trees over the segments (sorted by efficiency) of the layers still free:
      // removing a layer is a point update and F is a prefix search, both O(log S).
      std::vector<double> fen_da, fen_dc;
      std::vector<std::size_t> seg_first, seg_pos;  // positions of layer k's segments
      double base_w = 0.0, base_c = 0.0;
    };
    std::vector<family> fams;
    auto add_family = [&](std::size_t q, std::vector<double> mu) {
      family fm;
      fm.q = q;
      mu[q] = 0.0;
      fm.mu = mu;
      for (std::size_t r = 0; r < R; ++r) fm.penalty_cap += mu[r] * p_.cap[r];
      fm.priced.resize(p_.options());
      for (std::size_t o = 0; o < p_.options(); ++o) {
        double v = p_.cost[o];
        for (std::size_t r = 0; r < R; ++r) v += mu[r] * p_.a(o, r);
        fm.priced[o] = v;
      }
      lp1_workspace ws;
      sort_by_weight(p_, q, ws);
      auto cost = [&](std::size_t o) { return fm.priced[o]; };
      auto weight = [&](std::size_t o) { return p_.a(o, q); };
      fm.hull_start.resize(K);
      for (std::size_t k = 0; k < K; ++k) {
        const std::size_t g = core[k];
        group_hull(ws.hull, ws.sorted, p_.begin[g], p_.begin[g + 1], cost, weight);
        fm.hull_start[k] = ws.hull.front();
        for (std::size_t h = 0; h + 1 < ws.hull.size(); ++h) {
          const std::size_t from = ws.hull[h], to = ws.hull[h + 1];
          const double da = weight(to) - weight(from), dc = cost(from) - cost(to);
          fm.segs.push_back({dc / da, da, dc, k, from, to});
        }
      }
      std::stable_sort(fm.segs.begin(), fm.segs.end(),
                       [](const seg& x, const seg& y) { return x.eff > y.eff; });
      fams.push_back(std::move(fm));
    };
    add_family(0, lambda);
    if (R == 2) add_family(1, lambda);
    const auto& segs = fams[0].segs;
    const auto& hull_start = fams[0].hull_start;
    // F_k of every family as cumulative arrays over the segments of layers >= k.
    std::size_t removed_upto = 0;  // layers [0, removed_upto) are out of every F
    auto fen_rebuild = [&](family& fm) {
      const std::size_t S = fm.segs.size();
      fm.fen_da.assign(S + 1, 0.0);
      fm.fen_dc.assign(S + 1, 0.0);
      for (std::size_t i = 1; i <= S; ++i) {
        const auto& sg = fm.segs[i - 1];
        if (sg.k >= removed_upto) {
          fm.fen_da[i] += sg.da;
          fm.fen_dc[i] += sg.dc;
        }
        const std::size_t up = i + (i & (~i + 1));
        if (up <= S) {
          fm.fen_da[up] += fm.fen_da[i];
          fm.fen_dc[up] += fm.fen_dc[i];
        }
      }
      fm.base_w = 0.0;
      fm.base_c = 0.0;
      for (std::size_t j = removed_upto; j < K; ++j) {
        fm.base_w += p_.a(fm.hull_start[j], fm.q);
        fm.base_c += fm.priced[fm.hull_start[j]];
      }
    };
    for (auto& fm : fams) {
      fm.seg_first.assign(K + 1, 0);
      for (const auto& sg : fm.segs) ++fm.seg_first[sg.k + 1];
      for (std::size_t k = 0; k < K; ++k) fm.seg_first[k + 1] += fm.seg_first[k];
      fm.seg_pos.resize(fm.segs.size());
      std::vector<std::size_t> fill(fm.seg_first.begin(), fm.seg_first.end() - 1);
      for (std::size_t i = 0; i < fm.segs.size(); ++i) fm.seg_pos[fill[fm.segs[i].k]++] = i;
      fen_rebuild(fm);
    }
    // F_k for every family: drop layers < k (exact rebuild every 256 layers bounds the drift of
    // the incremental sums).
    auto build_F = [&](std::size_t k) {
      for (; removed_upto < k; ++removed_upto) {
        const std::size_t j = removed_upto;
        for (auto& fm : fams) {
          const std::size_t S = fm.segs.size();
          for (std::size_t t = fm.seg_first[j]; t < fm.seg_first[j + 1]; ++t) {
            const std::size_t i0 = fm.seg_pos[t];
            const double da = fm.segs[i0].da, dc = fm.segs[i0].dc;
            for (std::size_t i = i0 + 1; i <= S; i += i & (~i + 1)) {
              fm.fen_da[i] -= da;
              fm.fen_dc[i] -= dc;
            }
          }
          fm.base_w -= p_.a(fm.hull_start[j], fm.q);
          fm.base_c -= fm.priced[fm.hull_start[j]];
        }
        if ((removed_upto + 1) % 256 == 0) {
          ++removed_upto;
          for (auto& fm : fams) fen_rebuild(fm);
          --removed_upto;
        }
      }
    };
    auto F = [&](const family& fm, double x) {
      const double room = x - fm.base_w;
      if (!(room >= 0.0)) return inf;
      const std::size_t S = fm.segs.size();
      std::size_t pos = 0;
      double left = room, gained = 0.0;
      std::size_t step = 1;
      while (step * 2 <= S) step *= 2;
      for (; step > 0; step >>= 1) {
        const std::size_t nxt = pos + step;
        if (nxt <= S && fm.fen_da[nxt] <= left) {
          pos = nxt;
          left -= fm.fen_da[nxt];
          gained += fm.fen_dc[nxt];
        }
      }
      // segments [0, pos) of the free layers fit whole; segment pos (free, else past the end)
      // breaks at efficiency eff
      double v = fm.base_c - gained;
      if (pos < S) v -= std::max(0.0, left) * fm.segs[pos].eff;
      return v;
    };
    // Bound of a state with cost c and use u[] (remaining layers from the built stage on).
    auto state_bound = [&](double c, const double* u) {
      double best = -inf;
      for (const auto& fm : fams) {
        double b = c - fm.penalty_cap + F(fm, p_.cap[fm.q] - u[fm.q]);
        for (std::size_t r = 0; r < R; ++r) b += fm.mu[r] * u[r];
        best = std::max(best, b);
      }
      return best;
    };

    // States of the current stage.
    struct stage {
      std::vector<std::uint32_t> parent, option;
    };
    std::vector<stage> trail(K);
    std::vector<double> sc{c0}, sa(a0), sb{root_bound_value};
    std::vector<double> nc, na, nb;
    std::vector<std::uint32_t> npar, nopt;
    std::vector<std::size_t> perm;
    constexpr std::uint64_t state_cap = std::uint64_t{1} << 24;  // ~16.7M states, ~130 MB of trail

    auto choice_of = [&](std::size_t k_done, std::size_t idx, std::vector<std::size_t>& x) {
      // x[g] for the core layers 0..k_done-1 of state idx at stage k_done
      for (std::size_t k = k_done; k-- > 0;) {
        x[core[k]] = trail[k].option[idx];
        idx = trail[k].parent[idx];
      }
    };
    // Greedy completion of state idx at stage k (layers k.. free) using the stage's F segments.
    std::vector<char> blocked(K);
    std::vector<double> ubuf(R);
    std::vector<std::size_t> complete_x(K);
    std::vector<double> complete_use(R);
    auto complete = [&](std::size_t k, std::size_t idx) {
      std::vector<std::size_t>& x = complete_x;
      double c = sc[idx];
      std::vector<double>& use = complete_use;
      for (std::size_t r = 0; r < R; ++r) use[r] = sa[idx * R + r];
      for (std::size_t j = k; j < K; ++j) {
        x[j] = hull_start[j];
        c += p_.cost[hull_start[j]];
        for (std::size_t r = 0; r < R; ++r) use[r] += p_.a(hull_start[j], r);
      }
      std::fill(blocked.begin(), blocked.end(), 0);
      for (const auto& s : segs) {
        if (s.k < k || blocked[s.k]) continue;
        if (x[s.k] != s.from) {
          blocked[s.k] = 1;
          continue;
        }
        bool fits = true;
        for (std::size_t r = 0; r < R && fits; ++r)
          fits = use[r] + p_.a(s.to, r) - p_.a(s.from, r) <= p_.cap[r];
        if (!fits) {
          blocked[s.k] = 1;
          continue;
        }
        for (std::size_t r = 0; r < R; ++r) use[r] += p_.a(s.to, r) - p_.a(s.from, r);
        c += p_.cost[s.to] - p_.cost[s.from];
        x[s.k] = s.to;
      }
      if (!(c < ub_)) return;
      std::vector<std::size_t> full(G);
      for (std::size_t g = 0; g < G; ++g) full[g] = p_.begin[g];  // constants: their only option
      choice_of(k, idx, full);
      for (std::size_t j = k; j < K; ++j) full[core[j]] = x[j];
      try_incumbent(full);  // re-sums exactly and re-checks feasibility
    };

    // One pass over the stages. beam > 0: a heuristic pass keeping only the `beam` states of least
    // bound per stage (its discards prove nothing); beam == 0: the exact pass. Returns true when
    // the exact pass has finished (out holds the outcome).
    mckp_outcome out;
    // Two budgets, exact pass: meet in the middle. The Pareto set of the last core layers'
    // completions, (row 0, row 1, cost) with dominated points removed, is built backwards while it
    // stays small; at that stage every forward state is completed exactly by a 2-D dominance
    // query (least cost with row 0 <= and row 1 <= the state's residuals), which closes the
    // search without enumerating the last layers state by state.
    struct back_level {
      std::vector<double> w0, w1, c;
      std::vector<std::uint32_t> parent, option;
    };
    std::vector<back_level> back;  // back[i] holds the completions of layers kstar + i ..
    std::size_t kstar = K;         // K: no join
    if (beam == 0 && R == 2) {
      constexpr std::size_t level_cap = std::size_t{1} << 15, total_cap = std::size_t{1} << 21;
      // lightest and cheapest prefixes, for feasibility and cost pruning of completions
      std::vector<double> pre0(K + 1, a0[0]), pre1(K + 1, a0[1]), prec(K + 1, c0);
      for (std::size_t k = 0; k < K; ++k) {
        double m0 = inf, m1 = inf, mc = inf;
        for (std::size_t o = p_.begin[core[k]]; o < p_.begin[core[k] + 1]; ++o) {
          m0 = std::min(m0, p_.a(o, 0));
          m1 = std::min(m1, p_.a(o, 1));
          mc = std::min(mc, p_.cost[o]);
        }
        pre0[k + 1] = pre0[k] + m0;
        pre1[k + 1] = pre1[k] + m1;
        prec[k + 1] = prec[k] + mc;
      }
      std::vector<back_level> levels;  // built from the end: levels[0] = completions of nothing
      levels.push_back({{0.0}, {0.0}, {0.0}, {0}, {0}});
      std::size_t total = 1;
      std::vector<std::size_t> order;
      for (std::size_t k = K; k-- > 0;) {
        const auto& nx = levels.back();
        back_level lv;
        for (std::size_t i = 0; i < nx.c.size(); ++i)
          for (std::size_t o = p_.begin[core[k]]; o < p_.begin[core[k] + 1]; ++o) {
            const double w0 = nx.w0[i] + p_.a(o, 0), w1 = nx.w1[i] + p_.a(o, 1);
            const double c = nx.c[i] + p_.cost[o];
            if (!(pre0[k] + w0 <= p_.cap[0] && pre1[k] + w1 <= p_.cap[1])) continue;
            if (prec[k] + c >= ub_ - eps()) continue;  // cannot beat the incumbent
            lv.w0.push_back(w0);
            lv.w1.push_back(w1);
            lv.c.push_back(c);
            lv.parent.push_back(static_cast<std::uint32_t>(i));
            lv.option.push_back(static_cast<std::uint32_t>(o));
          }
        // dominance: sort by cost, keep a point unless an earlier one is no heavier in both rows
        order.resize(lv.c.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) {
          if (lv.c[i] != lv.c[j]) return lv.c[i] < lv.c[j];
          if (lv.w0[i] != lv.w0[j]) return lv.w0[i] < lv.w0[j];
          if (lv.w1[i] != lv.w1[j]) return lv.w1[i] < lv.w1[j];
          return i < j;
        });
        std::map<double, double> stair;
        back_level kept;
        for (std::size_t i : order) {
          auto it = stair.upper_bound(lv.w0[i]);
          if (it != stair.begin() && std::prev(it)->second <= lv.w1[i]) continue;
          auto pos = stair.insert_or_assign(lv.w0[i], lv.w1[i]).first;
          for (auto nx2 = std::next(pos); nx2 != stair.end() && nx2->second >= lv.w1[i];)
            nx2 = stair.erase(nx2);
          kept.w0.push_back(lv.w0[i]);
          kept.w1.push_back(lv.w1[i]);
          kept.c.push_back(lv.c[i]);
          kept.parent.push_back(lv.parent[i]);
          kept.option.push_back(lv.option[i]);
        }
        if (kept.c.size() > level_cap || total + kept.c.size() > total_cap) break;
        if (lim_.node_limit != 0 && nodes_ + kept.c.size() >= lim_.node_limit / 2) break;
        total += kept.c.size();
        nodes_ += kept.c.size();
        levels.push_back(std::move(kept));
        kstar = k;
      }
      if (kstar < K) {
        // reorder so that back[0] is the level of layer kstar
        back.assign(std::make_move_iterator(levels.rbegin()),
                    std::make_move_iterator(levels.rend()));
      }
    }
    // Completes every state of stage kstar exactly; returns through `out`.
    auto join = [&]() {
      const auto& P = back[0];
      std::vector<std::size_t> pts(P.c.size()), qs(sc.size());
      std::iota(pts.begin(), pts.end(), std::size_t{0});
      std::iota(qs.begin(), qs.end(), std::size_t{0});
      std::sort(pts.begin(), pts.end(), [&](std::size_t i, std::size_t j) {
        return P.w0[i] != P.w0[j] ? P.w0[i] < P.w0[j] : i < j;
      });
      std::vector<double> res0(sc.size()), res1(sc.size());
      for (std::size_t s = 0; s < sc.size(); ++s) {
        res0[s] = p_.cap[0] - sa[2 * s];
        res1[s] = p_.cap[1] - sa[2 * s + 1];
      }
      std::sort(qs.begin(), qs.end(), [&](std::size_t i, std::size_t j) {
        return res0[i] != res0[j] ? res0[i] < res0[j] : i < j;
      });
      std::vector<double> ys(P.w1);
      std::sort(ys.begin(), ys.end());
      ys.erase(std::unique(ys.begin(), ys.end()), ys.end());
      const std::size_t Y = ys.size();
      std::vector<double> fen(Y + 1, inf);
      std::vector<std::size_t> fen_arg(Y + 1, 0);
      auto better = [&](double c, std::size_t a, double c2, std::size_t a2) {
        return c < c2 || (c == c2 && a < a2);
      };
      std::size_t next = 0;
      double best = inf;
      std::size_t best_state = 0, best_point = 0;
      for (std::size_t s : qs) {
        if (sb[s] >= ub_ - eps()) {
          pruned_min_ = std::min(pruned_min_, sb[s]);
          continue;
        }
        while (next < pts.size() && P.w0[pts[next]] <= res0[s]) {
          const std::size_t i = pts[next++];
          const std::size_t y = static_cast<std::size_t>(
              std::lower_bound(ys.begin(), ys.end(), P.w1[i]) - ys.begin());
          for (std::size_t t = y + 1; t <= Y; t += t & (~t + 1))
            if (better(P.c[i], i, fen[t], fen_arg[t])) {
              fen[t] = P.c[i];
              fen_arg[t] = i;
            }
        }
        std::size_t n =
            static_cast<std::size_t>(std::upper_bound(ys.begin(), ys.end(), res1[s]) - ys.begin());
        double m = inf;
        std::size_t arg = 0;
        for (; n > 0; n -= n & (~n + 1))
          if (better(fen[n], fen_arg[n], m, arg)) {
            m = fen[n];
            arg = fen_arg[n];
          }
        if (m == inf) continue;  // no completion fits
        const double total = sc[s] + m;
        if (total < best || (total == best && s < best_state)) {
          best = total;
          best_state = s;
          best_point = arg;
        }
      }
      if (best < ub_) {
        std::vector<std::size_t> full(G);
        for (std::size_t g = 0; g < G; ++g) full[g] = p_.begin[g];
        choice_of(kstar, best_state, full);
        std::size_t i = best_point;
        for (std::size_t lv = 0; lv + 1 < back.size(); ++lv) {
          full[core[kstar + lv]] = back[lv].option[i];
          i = back[lv].parent[i];
        }
        try_incumbent(full);
        if (ub_ > best) pruned_min_ = std::min(pruned_min_, best);  // rejected by the exact re-sum
      }
      out = finish(true);
    };

    auto stages = [&](std::size_t beam) -> bool {
      sc.assign(1, c0);
      sa = a0;
      sb.assign(1, root_bound_value);
      const bool exact = beam == 0;
      auto discard = [&](double b) {
        if (exact) pruned_min_ = std::min(pruned_min_, b);
      };
      for (std::size_t k = 0; k < K; ++k) {
        if (exact && k == kstar) {
          join();
          return true;
        }
        if (!exact && ub_ < inf && time_up())
          return false;  // yield to the limit once a solution exists
        const std::size_t g = core[k];
        build_F(k + 1);
        nc.clear();
        na.clear();
        nb.clear();
        npar.clear();
        nopt.clear();
        const std::size_t S = sc.size();
        for (std::size_t s = 0; s < S; ++s) {
          if (sb[s] >= ub_ - eps()) {
            discard(sb[s]);
            continue;
          }
          if (exact && (out_of_budget() || nodes_ >= state_cap)) {
            double open_min = inf;
            for (std::size_t t = s; t < S; ++t) open_min = std::min(open_min, sb[t]);
            for (double b : nb) open_min = std::min(open_min, b);
            out = finish(false, open_min);
            return true;
          }
          for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o) {
            bool fits = true;
            for (std::size_t r = 0; r < R && fits; ++r) {
              ubuf[r] = sa[s * R + r] + p_.a(o, r);
              fits = ubuf[r] + suffix_min[(k + 1) * R + r] <= p_.cap[r];
            }
            if (!fits) continue;
            const double c = sc[s] + p_.cost[o];
            const double b = std::max(state_bound(c, ubuf.data()), sb[s]);
            if (b >= ub_ - eps()) {
              discard(b);
              continue;
            }
            if (exact) ++nodes_;
            nc.push_back(c);
            nb.push_back(b);
            for (std::size_t r = 0; r < R; ++r) na.push_back(sa[s * R + r] + p_.a(o, r));
            npar.push_back(static_cast<std::uint32_t>(s));
            nopt.push_back(static_cast<std::uint32_t>(o));
          }
        }
        // Dominance: drop a state when another is no worse in cost and every row.
        const std::size_t N = nc.size();
        perm.resize(N);
        std::iota(perm.begin(), perm.end(), std::size_t{0});
        std::vector<char> keep(N, 1);
        if (R == 1) {
          std::sort(perm.begin(), perm.end(), [&](std::size_t i, std::size_t j) {
            if (na[i] != na[j]) return na[i] < na[j];
            if (nc[i] != nc[j]) return nc[i] < nc[j];
            return i < j;
          });
          double best_c = inf;
          for (std::size_t i : perm) {
            if (nc[i] < best_c)
              best_c = nc[i];
            else
              keep[i] = 0;
          }
        } else if (R == 2) {
          std::sort(perm.begin(), perm.end(), [&](std::size_t i, std::size_t j) {
            if (nc[i] != nc[j]) return nc[i] < nc[j];
            if (na[2 * i] != na[2 * j]) return na[2 * i] < na[2 * j];
            if (na[2 * i + 1] != na[2 * j + 1]) return na[2 * i + 1] < na[2 * j + 1];
            return i < j;
          });
          std::map<double, double> stair;  // row0 -> least row1 among kept states with <= row0
          for (std::size_t i : perm) {
            const double x0 = na[2 * i], x1 = na[2 * i + 1];
            auto it = stair.upper_bound(x0);
            if (it != stair.begin() && std::prev(it)->second <= x1) {
              keep[i] = 0;
              continue;
            }
            auto pos = stair.insert_or_assign(x0, x1).first;
            auto nx = std::next(pos);
            while (nx != stair.end() && nx->second >= x1) nx = stair.erase(nx);
          }
        }
        if (!exact) {
          std::size_t kept = 0;
          for (std::size_t i = 0; i < N; ++i) kept += keep[i] != 0;
          if (kept > beam) {
            std::vector<std::size_t> live;
            for (std::size_t i = 0; i < N; ++i)
              if (keep[i]) live.push_back(i);
            std::nth_element(live.begin(), live.begin() + static_cast<std::ptrdiff_t>(beam),
                             live.end(), [&](std::size_t i, std::size_t j) {
                               return nb[i] != nb[j] ? nb[i] < nb[j] : i < j;
                             });
            std::fill(keep.begin(), keep.end(), 0);
            for (std::size_t i = 0; i < beam; ++i) keep[live[i]] = 1;
          }
        }
        // Compact into the next stage, keeping creation order (deterministic).
        sc.clear();
        sb.clear();
        sa.clear();
        trail[k].parent.clear();
        trail[k].option.clear();
        std::size_t best_idx = 0;
        for (std::size_t i = 0; i < N; ++i) {
          if (!keep[i]) continue;
          if (nb[i] < (sb.empty() ? inf : sb[best_idx])) best_idx = sb.size();
          sc.push_back(nc[i]);
          sb.push_back(nb[i]);
          for (std::size_t r = 0; r < R; ++r) sa.push_back(na[i * R + r]);
          trail[k].parent.push_back(npar[i]);
          trail[k].option.push_back(nopt[i]);
        }
        if (sc.empty()) {
          if (exact) out = finish(true);
          return exact;
        }
        // greedy completion of the best state on ~64 stages per pass (each costs O(segments))
        if (k + 1 < K && (k % std::max<std::size_t>(1, K / 64) == 0)) complete(k + 1, best_idx);
      }
      // Final stage: every state is a complete feasible choice.
      std::size_t best = 0;
      for (std::size_t i = 1; i < sc.size(); ++i)
        if (sc[i] < sc[best]) best = i;
      if (sc[best] < ub_) {
        std::vector<std::size_t> x(G);
        for (std::size_t g = 0; g < G; ++g) x[g] = p_.begin[g];
        choice_of(K, best, x);
        ub_ = sc[best];
        best_.resize(G);
        for (std::size_t g = 0; g < G; ++g) best_[g] = p_.label[x[g]];
      }
      if (!exact) return false;
      for (std::size_t i = 0; i < sc.size(); ++i)
        if (i != best) pruned_min_ = std::min(pruned_min_, sc[i]);
      out = finish(true);
      return true;
    };
    stages(beam);
    return out;
  }
};

}  // namespace adaquant::detail

namespace adaquant {
namespace detail {

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

}  // namespace detail

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
