#pragma once
// The bounded search: a dynamic program over the core (the layers the reductions left undecided),
// one layer per stage. A stage extends every state by every option of its layer, drops a child
// that cannot fit beside the lightest completion or whose bound (bound_family.hpp) cannot beat
// the incumbent, then thins the children (state_set.hpp). beam > 0 is a heuristic pass keeping
// the `beam` states of least bound (its discards prove nothing); beam == 0 is exact: every
// discard's bound is kept for the proof, each child counts as a node, and with two rows the
// stages end at the meet-in-the-middle join (meet_in_middle.hpp).

#include <adaquant/bitalloc/lp_bound.hpp>
#include <adaquant/bitalloc/solver/bound_family.hpp>
#include <adaquant/bitalloc/solver/meet_in_middle.hpp>
#include <adaquant/bitalloc/solver/progress.hpp>
#include <adaquant/bitalloc/solver/state_set.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace adaquant::detail {

// The groups with more than one option, in stage order, and the fixed rest.
struct search_core {
  std::vector<std::size_t> layers;
  double c0 = 0.0;                 // cost of the fixed groups
  std::vector<double> a0;          // their use of every row
  std::vector<double> suffix_min;  // [k * R + r]: lightest completion of core layers k.. on row r
};

// Orders the core by ambiguity, the gap between a layer's two best options priced by lambda:
// most ambiguous first for the beam (room to steer early); clear-cut first for the exact pass,
// so the state set branches only in the last stages.
[[nodiscard]] inline search_core make_search_core(const mckp& p, const std::vector<double>& lambda,
                                                  bool ambiguous_first) {
  const std::size_t R = p.rows, G = p.groups();
  search_core core;
  core.a0.assign(R, 0.0);
  for (std::size_t g = 0; g < G; ++g) {
    if (p.begin[g + 1] - p.begin[g] == 1) {
      const std::size_t o = p.begin[g];
      core.c0 += p.cost[o];
      for (std::size_t r = 0; r < R; ++r) core.a0[r] += p.a(o, r);
    } else {
      core.layers.push_back(g);
    }
  }
  if (core.layers.empty()) return core;
  std::vector<double> ambiguity(G, inf);
  std::vector<double> full;
  for (std::size_t g = 0; g < G; ++g) {
    double mn = inf;
    full.clear();
    for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) {
      double v = p.cost[o];
      for (std::size_t r = 1; r < R; ++r) v += lambda[r] * p.a(o, r);
      full.push_back(v + lambda[0] * p.a(o, 0));
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
  std::stable_sort(core.layers.begin(), core.layers.end(), [&](std::size_t i, std::size_t j) {
    return ambiguous_first ? ambiguity[i] < ambiguity[j] : ambiguity[i] > ambiguity[j];
  });
  const std::size_t K = core.layers.size();
  core.suffix_min.assign((K + 1) * R, 0.0);
  for (std::size_t k = K; k-- > 0;) {
    const std::size_t g = core.layers[k];
    for (std::size_t r = 0; r < R; ++r) {
      double m = inf;
      for (std::size_t o = p.begin[g]; o < p.begin[g + 1]; ++o) m = std::min(m, p.a(o, r));
      core.suffix_min[k * R + r] = core.suffix_min[(k + 1) * R + r] + m;
    }
  }
  return core;
}

class stage_search {
 public:
  static constexpr std::uint64_t state_cap = std::uint64_t{1} << 24;  // ~130 MB of trail

  stage_search(const mckp& p, search_progress& pr, const search_core& core,
               const std::vector<double>& lambda, std::size_t beam)
      : p_(p),
        pr_(pr),
        core_(core),
        beam_(beam),
        bounds_(p, core.layers, lambda),
        trail_(core.layers.size()),
        blocked_(core.layers.size()),
        ubuf_(p.rows),
        complete_x_(core.layers.size()),
        complete_use_(p.rows) {}

  // Runs the stages from the single state (fixed groups, root_bound). Exact pass: returns the
  // outcome. Beam pass: only the incumbent changes (the outcome is empty).
  mckp_outcome run(double root_bound) {
    const std::size_t R = p_.rows, K = core_.layers.size();
    const bool exact = beam_ == 0;
    std::optional<backward_completions> back;
    if (exact && R == 2) back.emplace(p_, core_.layers, core_.c0, core_.a0, pr_);
    const std::size_t kstar = back ? back->first_layer() : K;
    states_.cost.assign(1, core_.c0);
    states_.use = core_.a0;
    states_.bound.assign(1, root_bound);
    for (std::size_t k = 0; k < K; ++k) {
      if (exact && k == kstar) return back->join(p_, core_.layers, states_, trail_, pr_);
      if (!exact && pr_.ub < inf && pr_.time_up()) return {};  // yield once a solution exists
      const std::size_t g = core_.layers[k];
      bounds_.free_from(k + 1);
      children_.clear();
      const auto& sc = states_.cost;
      const auto& sa = states_.use;
      const auto& sb = states_.bound;
      const std::size_t S = sc.size();
      for (std::size_t s = 0; s < S; ++s) {
        if (sb[s] >= pr_.ub - pr_.eps()) {
          if (exact) pr_.discard(sb[s]);
          continue;
        }
        if (exact && (pr_.out_of_budget() || pr_.nodes >= state_cap)) {
          double open_min = inf;
          for (std::size_t t = s; t < S; ++t) open_min = std::min(open_min, sb[t]);
          for (double b : children_.bound) open_min = std::min(open_min, b);
          return pr_.finish(false, open_min);
        }
        for (std::size_t o = p_.begin[g]; o < p_.begin[g + 1]; ++o) {
          bool fits = true;
          for (std::size_t r = 0; r < R && fits; ++r) {
            ubuf_[r] = sa[s * R + r] + p_.a(o, r);
            fits = ubuf_[r] + core_.suffix_min[(k + 1) * R + r] <= p_.cap[r];
          }
          if (!fits) continue;
          const double c = sc[s] + p_.cost[o];
          const double b = std::max(bounds_.bound(c, ubuf_.data()), sb[s]);
          if (b >= pr_.ub - pr_.eps()) {
            if (exact) pr_.discard(b);
            continue;
          }
          if (exact) ++pr_.nodes;
          children_.push(c, ubuf_.data(), R, b, s, o);
        }
      }
      filter_.select(children_, R, beam_);
      const std::size_t best_idx = filter_.advance(children_, R, states_, trail_[k]);
      if (states_.size() == 0) return exact ? pr_.finish(true) : mckp_outcome{};
      // greedy completion of the best state on ~64 stages per pass (each costs O(segments))
      if (k + 1 < K && (k % std::max<std::size_t>(1, K / 64) == 0)) complete(k + 1, best_idx);
    }
    // Final stage: every state is a complete feasible choice.
    const auto& sc = states_.cost;
    std::size_t best = 0;
    for (std::size_t i = 1; i < sc.size(); ++i)
      if (sc[i] < sc[best]) best = i;
    if (sc[best] < pr_.ub) {
      std::vector<std::size_t> x(p_.groups());
      for (std::size_t g = 0; g < p_.groups(); ++g) x[g] = p_.begin[g];
      trail_.choice(K, best, core_.layers, x);
      pr_.accept(p_, x, sc[best]);
    }
    if (!exact) return {};
    for (std::size_t i = 0; i < sc.size(); ++i)
      if (i != best) pr_.discard(sc[i]);
    return pr_.finish(true);
  }

 private:
  const mckp& p_;
  search_progress& pr_;
  const search_core& core_;
  std::size_t beam_;
  stage_bounds bounds_;
  state_trail trail_;
  state_set states_;
  child_states children_;
  stage_filter filter_;
  std::vector<char> blocked_;
  std::vector<double> ubuf_;
  std::vector<std::size_t> complete_x_;
  std::vector<double> complete_use_;

  // Greedy completion of state idx at stage k (layers k.. free): the lightest hull points of the
  // primary family, then its segments by decreasing efficiency while every row fits.
  void complete(std::size_t k, std::size_t idx) {
    const std::size_t R = p_.rows, K = core_.layers.size();
    const auto& hull_start = bounds_.primary().hull_start;
    std::vector<std::size_t>& x = complete_x_;
    std::vector<double>& use = complete_use_;
    double c = states_.cost[idx];
    for (std::size_t r = 0; r < R; ++r) use[r] = states_.use[idx * R + r];
    for (std::size_t j = k; j < K; ++j) {
      x[j] = hull_start[j];
      c += p_.cost[hull_start[j]];
      for (std::size_t r = 0; r < R; ++r) use[r] += p_.a(hull_start[j], r);
    }
    std::fill(blocked_.begin(), blocked_.end(), 0);
    for (const auto& s : bounds_.primary().segs) {
      if (s.k < k || blocked_[s.k]) continue;
      if (x[s.k] != s.from) {
        blocked_[s.k] = 1;
        continue;
      }
      bool fits = true;
      for (std::size_t r = 0; r < R && fits; ++r)
        fits = use[r] + p_.a(s.to, r) - p_.a(s.from, r) <= p_.cap[r];
      if (!fits) {
        blocked_[s.k] = 1;
        continue;
      }
      for (std::size_t r = 0; r < R; ++r) use[r] += p_.a(s.to, r) - p_.a(s.from, r);
      c += p_.cost[s.to] - p_.cost[s.from];
      x[s.k] = s.to;
    }
    if (!(c < pr_.ub)) return;
    std::vector<std::size_t> full(p_.groups());
    for (std::size_t g = 0; g < p_.groups(); ++g) full[g] = p_.begin[g];  // constants: one option
    trail_.choice(k, idx, core_.layers, full);
    for (std::size_t j = k; j < K; ++j) full[core_.layers[j]] = x[j];
    pr_.offer(p_, full);  // re-sums exactly and re-checks feasibility
  }
};

// The search over the current problem; an empty core needs none.
inline mckp_outcome bounded_search(const mckp& p, search_progress& pr,
                                   const std::vector<double>& lambda, double root_bound,
                                   std::size_t beam) {
  const search_core core = make_search_core(p, lambda, beam != 0);
  if (core.layers.empty()) {
    std::vector<std::size_t> x(p.groups());
    for (std::size_t g = 0; g < p.groups(); ++g) x[g] = p.begin[g];
    pr.offer(p, x);
    return pr.finish(true);
  }
  return stage_search(p, pr, core, lambda, beam).run(root_bound);
}

}  // namespace adaquant::detail
