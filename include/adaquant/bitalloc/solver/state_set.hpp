#pragma once
// The state sets of the bounded search: the states of one stage (partial choices of the first k
// core layers), their children, the trail that recovers a state's choice, and the filters that
// thin a stage (dominance, beam).

#include <adaquant/bitalloc/lp_bound.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <numeric>
#include <vector>

namespace adaquant::detail {

// Per state: cost, proven bound, and use of every row (state-major, `rows` per state).
struct state_set {
  std::vector<double> cost, use, bound;

  [[nodiscard]] std::size_t size() const noexcept { return cost.size(); }
  void clear() {
    cost.clear();
    use.clear();
    bound.clear();
  }
};

// A stage's children before filtering: each with the parent state and option it came from.
struct child_states : state_set {
  std::vector<std::uint32_t> parent, option;

  void clear() {
    state_set::clear();
    parent.clear();
    option.clear();
  }
  void push(double c, const double* u, std::size_t rows, double b, std::size_t from,
            std::size_t o) {
    cost.push_back(c);
    bound.push_back(b);
    for (std::size_t r = 0; r < rows; ++r) use.push_back(u[r]);
    parent.push_back(static_cast<std::uint32_t>(from));
    option.push_back(static_cast<std::uint32_t>(o));
  }
};

// Parent and option of every kept state, stage by stage.
class state_trail {
 public:
  struct level {
    std::vector<std::uint32_t> parent, option;
  };

  explicit state_trail(std::size_t stages) : levels_(stages) {}

  [[nodiscard]] level& operator[](std::size_t k) { return levels_[k]; }

  // x[core[k]] for k < k_done, from state idx of stage k_done.
  void choice(std::size_t k_done, std::size_t idx, const std::vector<std::size_t>& core,
              std::vector<std::size_t>& x) const {
    for (std::size_t k = k_done; k-- > 0;) {
      x[core[k]] = levels_[k].option[idx];
      idx = levels_[k].parent[idx];
    }
  }

 private:
  std::vector<level> levels_;
};

// Two rows: calls keep(i) for every point i < n that no other point is no worse than in cost and
// both rows (of equal points the first in order survives). Points are visited by cost, then row 0,
// row 1 and index; a staircase of the kept points answers each dominance query in O(log n).
template <class Cost, class Row0, class Row1, class Keep>
void pareto_filter_2d(std::size_t n, std::vector<std::size_t>& order, Cost cost, Row0 w0, Row1 w1,
                      Keep keep) {
  order.resize(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) {
    if (cost(i) != cost(j)) return cost(i) < cost(j);
    if (w0(i) != w0(j)) return w0(i) < w0(j);
    if (w1(i) != w1(j)) return w1(i) < w1(j);
    return i < j;
  });
  std::map<double, double> stair;  // row0 -> least row1 among kept points with <= row0
  for (std::size_t i : order) {
    const double x0 = w0(i), x1 = w1(i);
    auto it = stair.upper_bound(x0);
    if (it != stair.begin() && std::prev(it)->second <= x1) continue;
    auto pos = stair.insert_or_assign(x0, x1).first;
    for (auto nx = std::next(pos); nx != stair.end() && nx->second >= x1;) nx = stair.erase(nx);
    keep(i);
  }
}

// Thins a stage's children and moves the survivors into the next stage's states.
class stage_filter {
 public:
  // Drops a child when another is no worse in cost and every row (one and two rows); with
  // beam > 0 then keeps only the `beam` children of least bound.
  void select(const child_states& ch, std::size_t rows, std::size_t beam) {
    const std::size_t N = ch.size();
    const auto& nc = ch.cost;
    const auto& na = ch.use;
    const auto& nb = ch.bound;
    keep_.assign(N, 1);
    if (rows == 1) {
      perm_.resize(N);
      std::iota(perm_.begin(), perm_.end(), std::size_t{0});
      std::sort(perm_.begin(), perm_.end(), [&](std::size_t i, std::size_t j) {
        if (na[i] != na[j]) return na[i] < na[j];
        if (nc[i] != nc[j]) return nc[i] < nc[j];
        return i < j;
      });
      double best_c = inf;
      for (std::size_t i : perm_) {
        if (nc[i] < best_c)
          best_c = nc[i];
        else
          keep_[i] = 0;
      }
    } else if (rows == 2) {
      std::fill(keep_.begin(), keep_.end(), 0);
      pareto_filter_2d(
          N, perm_, [&](std::size_t i) { return nc[i]; }, [&](std::size_t i) { return na[2 * i]; },
          [&](std::size_t i) { return na[2 * i + 1]; }, [&](std::size_t i) { keep_[i] = 1; });
    }
    if (beam == 0) return;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < N; ++i) kept += keep_[i] != 0;
    if (kept <= beam) return;
    std::vector<std::size_t> live;
    for (std::size_t i = 0; i < N; ++i)
      if (keep_[i]) live.push_back(i);
    std::nth_element(
        live.begin(), live.begin() + static_cast<std::ptrdiff_t>(beam), live.end(),
        [&](std::size_t i, std::size_t j) { return nb[i] != nb[j] ? nb[i] < nb[j] : i < j; });
    std::fill(keep_.begin(), keep_.end(), 0);
    for (std::size_t i = 0; i < beam; ++i) keep_[live[i]] = 1;
  }

  // The selected children become `next` (creation order kept: deterministic), their origins
  // `level`. Returns the index of the state of least bound (the first of equals).
  std::size_t advance(const child_states& ch, std::size_t rows, state_set& next,
                      state_trail::level& level) const {
    next.clear();
    level.parent.clear();
    level.option.clear();
    std::size_t best_idx = 0;
    for (std::size_t i = 0; i < ch.size(); ++i) {
      if (!keep_[i]) continue;
      if (ch.bound[i] < (next.bound.empty() ? inf : next.bound[best_idx]))
        best_idx = next.bound.size();
      next.cost.push_back(ch.cost[i]);
      next.bound.push_back(ch.bound[i]);
      for (std::size_t r = 0; r < rows; ++r) next.use.push_back(ch.use[i * rows + r]);
      level.parent.push_back(ch.parent[i]);
      level.option.push_back(ch.option[i]);
    }
    return best_idx;
  }

 private:
  std::vector<std::size_t> perm_;
  std::vector<char> keep_;
};

}  // namespace adaquant::detail
