#pragma once
// Two rows, exact pass: meet in the middle. The Pareto set of the completions of the last core
// layers, (row 0, row 1, cost) with dominated points removed, is built backwards while it stays
// small; the forward search stops at its first layer, where every state is completed exactly by
// a 2-D dominance query (least cost with row 0 <= and row 1 <= the state's residuals).

#include <adaquant/bitalloc/lp_bound.hpp>
#include <adaquant/bitalloc/solver/progress.hpp>
#include <adaquant/bitalloc/solver/state_set.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <numeric>
#include <vector>

namespace adaquant::detail {

class backward_completions {
 public:
  // Adds levels from core layer K-1 down while a level stays under 2^15 points, all levels under
  // 2^21, and under half the node limit. A completion goes when the lightest prefix cannot carry
  // it or the cheapest prefix cannot make it beat the incumbent. Each point counts as a node.
  backward_completions(const mckp& p, const std::vector<std::size_t>& core, double c0,
                       const std::vector<double>& a0, search_progress& pr)
      : kstar_(core.size()) {
    constexpr std::size_t level_cap = std::size_t{1} << 15, total_cap = std::size_t{1} << 21;
    const std::size_t K = core.size();
    // lightest and cheapest prefixes, for feasibility and cost pruning of completions
    std::vector<double> pre0(K + 1, a0[0]), pre1(K + 1, a0[1]), prec(K + 1, c0);
    for (std::size_t k = 0; k < K; ++k) {
      double m0 = inf, m1 = inf, mc = inf;
      for (std::size_t o = p.begin[core[k]]; o < p.begin[core[k] + 1]; ++o) {
        m0 = std::min(m0, p.a(o, 0));
        m1 = std::min(m1, p.a(o, 1));
        mc = std::min(mc, p.cost[o]);
      }
      pre0[k + 1] = pre0[k] + m0;
      pre1[k + 1] = pre1[k] + m1;
      prec[k + 1] = prec[k] + mc;
    }
    std::vector<level> levels;  // built from the end: levels[0] = completions of nothing
    levels.push_back({{0.0}, {0.0}, {0.0}, {0}, {0}});
    std::size_t total = 1;
    std::vector<std::size_t> order;
    for (std::size_t k = K; k-- > 0;) {
      const auto& nx = levels.back();
      level lv;
      for (std::size_t i = 0; i < nx.c.size(); ++i)
        for (std::size_t o = p.begin[core[k]]; o < p.begin[core[k] + 1]; ++o) {
          const double w0 = nx.w0[i] + p.a(o, 0), w1 = nx.w1[i] + p.a(o, 1);
          const double c = nx.c[i] + p.cost[o];
          if (!(pre0[k] + w0 <= p.cap[0] && pre1[k] + w1 <= p.cap[1])) continue;
          if (prec[k] + c >= pr.ub - pr.eps()) continue;  // cannot beat the incumbent
          lv.w0.push_back(w0);
          lv.w1.push_back(w1);
          lv.c.push_back(c);
          lv.parent.push_back(static_cast<std::uint32_t>(i));
          lv.option.push_back(static_cast<std::uint32_t>(o));
        }
      level kept;
      pareto_filter_2d(
          lv.c.size(), order, [&](std::size_t i) { return lv.c[i]; },
          [&](std::size_t i) { return lv.w0[i]; }, [&](std::size_t i) { return lv.w1[i]; },
          [&](std::size_t i) {
            kept.w0.push_back(lv.w0[i]);
            kept.w1.push_back(lv.w1[i]);
            kept.c.push_back(lv.c[i]);
            kept.parent.push_back(lv.parent[i]);
            kept.option.push_back(lv.option[i]);
          });
      if (kept.c.size() > level_cap || total + kept.c.size() > total_cap) break;
      if (pr.lim.node_limit != 0 && pr.nodes + kept.c.size() >= pr.lim.node_limit / 2) break;
      total += kept.c.size();
      pr.nodes += kept.c.size();
      levels.push_back(std::move(kept));
      kstar_ = k;
    }
    // reorder so that back_[0] is the level of layer kstar_
    if (kstar_ < K)
      back_.assign(std::make_move_iterator(levels.rbegin()),
                   std::make_move_iterator(levels.rend()));
  }

  // The first core layer the completions cover; core.size() when there are none.
  [[nodiscard]] std::size_t first_layer() const noexcept { return kstar_; }

  // Completes every state of stage first_layer() exactly; the search is then complete.
  mckp_outcome join(const mckp& p, const std::vector<std::size_t>& core, const state_set& states,
                    const state_trail& trail, search_progress& pr) const {
    const auto& P = back_[0];
    const auto& sc = states.cost;
    const auto& sa = states.use;
    const auto& sb = states.bound;
    std::vector<std::size_t> pts(P.c.size()), qs(sc.size());
    std::iota(pts.begin(), pts.end(), std::size_t{0});
    std::iota(qs.begin(), qs.end(), std::size_t{0});
    std::sort(pts.begin(), pts.end(), [&](std::size_t i, std::size_t j) {
      return P.w0[i] != P.w0[j] ? P.w0[i] < P.w0[j] : i < j;
    });
    std::vector<double> res0(sc.size()), res1(sc.size());
    for (std::size_t s = 0; s < sc.size(); ++s) {
      res0[s] = p.cap[0] - sa[2 * s];
      res1[s] = p.cap[1] - sa[2 * s + 1];
    }
    std::sort(qs.begin(), qs.end(), [&](std::size_t i, std::size_t j) {
      return res0[i] != res0[j] ? res0[i] < res0[j] : i < j;
    });
    // Sweep the states by residual row 0, inserting the points that fit it into a Fenwick tree
    // over row-1 ranks holding the least (cost, index); a prefix query answers each state.
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
      if (sb[s] >= pr.ub - pr.eps()) {
        pr.discard(sb[s]);
        continue;
      }
      while (next < pts.size() && P.w0[pts[next]] <= res0[s]) {
        const std::size_t i = pts[next++];
        const std::size_t y =
            static_cast<std::size_t>(std::lower_bound(ys.begin(), ys.end(), P.w1[i]) - ys.begin());
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
    if (best < pr.ub) {
      std::vector<std::size_t> full(p.groups());
      for (std::size_t g = 0; g < p.groups(); ++g) full[g] = p.begin[g];
      trail.choice(kstar_, best_state, core, full);
      std::size_t i = best_point;
      for (std::size_t lv = 0; lv + 1 < back_.size(); ++lv) {
        full[core[kstar_ + lv]] = back_[lv].option[i];
        i = back_[lv].parent[i];
      }
      pr.offer(p, full);
      if (pr.ub > best) pr.discard(best);  // rejected by the exact re-sum
    }
    return pr.finish(true);
  }

 private:
  struct level {
    std::vector<double> w0, w1, c;
    std::vector<std::uint32_t> parent, option;
  };
  std::vector<level> back_;  // back_[i] holds the completions of core layers kstar_ + i ..
  std::size_t kstar_;
};

}  // namespace adaquant::detail
