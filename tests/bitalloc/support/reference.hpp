#pragma once
// Straightforward reference solvers for the bit-allocation knapsack: what the tests compare the
// solver against, and the baselines beside its figures in adaquant_bench. Test support, not
// installed.
//
//   enumerate_min: tries every choice (prod_l |options_l| of them); exact for any number of rows.
//   dp_min:        one row with non-negative integer weights; O(layers x options x capacity).
//   dp2_min:       two rows with non-negative integer weights; O(layers x options x cap0 x cap1).

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace adaquant::detail {

struct reference_solution {
  bool feasible = false;
  double objective = std::numeric_limits<double>::infinity();
  std::vector<std::size_t> choice;
};

// cost[l][o]; rows[r][l][o]; a choice is feasible when sum_l rows[r][l][x_l] <= caps[r] for all r.
inline reference_solution enumerate_min(const std::vector<std::vector<double>>& cost,
                                        const std::vector<std::vector<std::vector<double>>>& rows,
                                        std::span<const double> caps) {
  reference_solution best;
  const std::size_t L = cost.size(), R = rows.size();
  if (L == 0) return best;
  std::vector<std::size_t> x(L, 0);
  for (;;) {
    double c = 0.0;
    for (std::size_t l = 0; l < L; ++l) c += cost[l][x[l]];
    bool ok = true;
    for (std::size_t r = 0; r < R && ok; ++r) {
      double u = 0.0;
      for (std::size_t l = 0; l < L; ++l) u += rows[r][l][x[l]];
      ok = u <= caps[r];
    }
    if (ok && c < best.objective) {
      best.feasible = true;
      best.objective = c;
      best.choice = x;
    }
    std::size_t l = 0;
    while (l < L && ++x[l] == cost[l].size()) x[l++] = 0;
    if (l == L) break;
  }
  return best;
}

// One row, integer weights: best[w] = least cost of the layers so far with total weight w.
inline reference_solution dp_min(const std::vector<std::vector<double>>& cost,
                                 const std::vector<std::vector<std::int64_t>>& weight,
                                 std::int64_t cap) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  reference_solution out;
  if (cap < 0 || cost.empty()) return out;
  const std::size_t W = static_cast<std::size_t>(cap) + 1;
  std::vector<double> cur(W, inf), next(W);
  cur[0] = 0.0;
  for (std::size_t l = 0; l < cost.size(); ++l) {
    std::fill(next.begin(), next.end(), inf);
    for (std::size_t o = 0; o < cost[l].size(); ++o) {
      const std::int64_t w = weight[l][o];
      if (w < 0 || w > cap) continue;
      const std::size_t sw = static_cast<std::size_t>(w);
      const double c = cost[l][o];
      for (std::size_t t = 0; t + sw < W; ++t) {
        const double v = cur[t] + c;
        if (v < next[t + sw]) next[t + sw] = v;
      }
    }
    cur.swap(next);
  }
  for (std::size_t t = 0; t < W; ++t)
    if (cur[t] < out.objective) out.objective = cur[t];
  out.feasible = out.objective < inf;
  return out;
}

// Two rows, integer weights: best[w0][w1] = least cost of the layers so far with those totals.
inline reference_solution dp2_min(const std::vector<std::vector<double>>& cost,
                                  const std::vector<std::vector<std::int64_t>>& w0,
                                  const std::vector<std::vector<std::int64_t>>& w1,
                                  std::int64_t cap0, std::int64_t cap1) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  reference_solution out;
  if (cap0 < 0 || cap1 < 0 || cost.empty()) return out;
  const std::size_t A = static_cast<std::size_t>(cap0) + 1, B = static_cast<std::size_t>(cap1) + 1;
  std::vector<double> cur(A * B, inf), next(A * B);
  cur[0] = 0.0;
  for (std::size_t l = 0; l < cost.size(); ++l) {
    std::fill(next.begin(), next.end(), inf);
    for (std::size_t o = 0; o < cost[l].size(); ++o) {
      if (w0[l][o] < 0 || w0[l][o] > cap0 || w1[l][o] < 0 || w1[l][o] > cap1) continue;
      const std::size_t d0 = static_cast<std::size_t>(w0[l][o]);
      const std::size_t d1 = static_cast<std::size_t>(w1[l][o]);
      const double c = cost[l][o];
      for (std::size_t a = 0; a + d0 < A; ++a)
        for (std::size_t b = 0; b + d1 < B; ++b) {
          const double v = cur[a * B + b] + c;
          double& t = next[(a + d0) * B + b + d1];
          if (v < t) t = v;
        }
    }
    cur.swap(next);
  }
  for (double v : cur)
    if (v < out.objective) out.objective = v;
  out.feasible = out.objective < inf;
  return out;
}

}  // namespace adaquant::detail
