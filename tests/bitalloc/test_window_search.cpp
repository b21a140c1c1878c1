// Two budgets on networks large enough for the window search (more than 32 undecided layers):
// the solver against the two-row dynamic program, and the window search on its own (it may only
// ever replace the incumbent by a cheaper feasible choice).

#include <adaquant/bitalloc/solver.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "support/reference.hpp"
#include "support/synthetic.hpp"

using namespace adaquant;

namespace {

// Costs k / 8 and integer resources 0..wmax (exact sums); budgets at 40% of each row's range.
struct instance {
  std::vector<std::vector<double>> cost;
  std::vector<std::vector<std::int64_t>> w0, w1;
  std::int64_t cap0 = 0, cap1 = 0;
};

instance random_instance(detail::splitmix64& g, std::size_t layers, std::uint64_t wmax) {
  instance t;
  std::int64_t lo0 = 0, hi0 = 0, lo1 = 0, hi1 = 0;
  for (std::size_t l = 0; l < layers; ++l) {
    const std::size_t m = 2 + g.next() % 4;
    t.cost.emplace_back();
    t.w0.emplace_back();
    t.w1.emplace_back();
    std::int64_t a0 = 99, b0 = 0, a1 = 99, b1 = 0;
    for (std::size_t o = 0; o < m; ++o) {
      t.cost.back().push_back(static_cast<double>(g.next() % 64) / 8.0);
      t.w0.back().push_back(static_cast<std::int64_t>(g.next() % (wmax + 1)));
      t.w1.back().push_back(static_cast<std::int64_t>(g.next() % (wmax + 1)));
      a0 = std::min(a0, t.w0.back().back());
      b0 = std::max(b0, t.w0.back().back());
      a1 = std::min(a1, t.w1.back().back());
      b1 = std::max(b1, t.w1.back().back());
    }
    lo0 += a0;
    hi0 += b0;
    lo1 += a1;
    hi1 += b1;
  }
  t.cap0 = lo0 + (hi0 - lo0) * 2 / 5;
  t.cap1 = lo1 + (hi1 - lo1) * 2 / 5;
  return t;
}

bit_allocation_problem to_problem(const instance& t) {
  bit_allocation_problem p;
  p.resource_names = {"r0", "r1"};
  for (std::size_t l = 0; l < t.cost.size(); ++l) {
    bit_allocation_layer layer;
    for (std::size_t o = 0; o < t.cost[l].size(); ++o)
      layer.options.push_back(
          {{}, t.cost[l][o], {static_cast<double>(t.w0[l][o]), static_cast<double>(t.w1[l][o])}});
    p.layers.push_back(std::move(layer));
  }
  return p;
}

detail::mckp to_mckp(const instance& t) {
  detail::mckp p;
  p.rows = 2;
  p.cap = {static_cast<double>(t.cap0), static_cast<double>(t.cap1)};
  for (std::size_t l = 0; l < t.cost.size(); ++l) {
    for (std::size_t o = 0; o < t.cost[l].size(); ++o) {
      p.cost.push_back(t.cost[l][o]);
      p.res.push_back(static_cast<double>(t.w0[l][o]));
      p.res.push_back(static_cast<double>(t.w1[l][o]));
      p.label.push_back(static_cast<std::uint32_t>(o));
    }
    p.begin.push_back(p.cost.size());
  }
  return p;
}

}  // namespace

TEST_CASE("two budgets: the solver with small windows equals the two-row dynamic program",
          "[bitalloc]") {
  // Windows of 4 layers (the default 32 exceeds what these instances leave undecided), so every
  // phase runs: window sweeps with doubling windows, fixing after each, then the exact search.
  detail::splitmix64 g{77};
  int searched = 0;
  for (int it = 0; it < 16; ++it) {
    const auto t = random_instance(g, 40 + g.next() % 25, 12);
    const auto ref = detail::dp2_min(t.cost, t.w0, t.w1, t.cap0, t.cap1);
    REQUIRE(ref.feasible);
    INFO("iteration " << it);
    for (std::uint64_t node_limit : {std::uint64_t{0}, std::uint64_t{300}}) {
      detail::mckp_limits lim;
      lim.min_window = 4;
      lim.node_limit = node_limit;
      const auto out = detail::mckp_solver(to_mckp(t), lim).run();
      REQUIRE(!out.infeasible);
      CHECK(out.lower_bound <= ref.objective);
      if (node_limit == 0) REQUIRE(out.status == allocation_status::optimal);
      if (out.status == allocation_status::no_solution) continue;
      double c = 0;
      std::int64_t u0 = 0, u1 = 0;
      for (std::size_t l = 0; l < t.cost.size(); ++l) {
        c += t.cost[l][out.choice[l]];
        u0 += t.w0[l][out.choice[l]];
        u1 += t.w1[l][out.choice[l]];
      }
      CHECK(c == out.objective);
      CHECK(u0 <= t.cap0);
      CHECK(u1 <= t.cap1);
      if (out.status == allocation_status::optimal) CHECK(out.objective == ref.objective);
      CHECK(out.objective >= ref.objective);
    }
    const double budgets[2] = {static_cast<double>(t.cap0), static_cast<double>(t.cap1)};
    const auto r = minimize_loss(to_problem(t), budgets);
    REQUIRE(r.status == allocation_status::optimal);
    CHECK(r.objective == ref.objective);
    ++searched;
  }
  CHECK(searched == 16);
}

TEST_CASE("the window search only replaces the incumbent by a cheaper feasible choice",
          "[bitalloc]") {
  detail::splitmix64 g{4711};
  int improved = 0;
  for (int it = 0; it < 30; ++it) {
    const auto t = random_instance(g, 48, 12);
    const auto ref = detail::dp2_min(t.cost, t.w0, t.w1, t.cap0, t.cap1);
    REQUIRE(ref.feasible);
    detail::mckp p = to_mckp(t);
    REQUIRE(detail::fit_reduce(p));
    detail::search_progress pr(detail::mckp_limits{});
    std::vector<double> lambda(2, 0.0);
    detail::root_bound(p, pr, lambda, true);
    if (pr.ub == detail::inf) continue;  // the root heuristics found nothing to improve on
    const double before = pr.ub;
    auto solve = [](detail::mckp sub, const detail::mckp_limits& lim) {
      return detail::mckp_solver(std::move(sub), lim).run();
    };
    INFO("iteration " << it);
    const bool better = detail::window_search(p, pr, lambda, 4, it % 2 == 1, solve);
    CHECK(better == (pr.ub < before));
    CHECK(pr.ub <= before);
    CHECK(pr.ub >= ref.objective);
    // the incumbent's labels are a feasible choice of the original table costing exactly ub
    REQUIRE(pr.best.size() == t.cost.size());
    double c = 0;
    std::int64_t u0 = 0, u1 = 0;
    for (std::size_t l = 0; l < t.cost.size(); ++l) {
      const std::size_t o = pr.best[l];
      REQUIRE(o < t.cost[l].size());
      c += t.cost[l][o];
      u0 += t.w0[l][o];
      u1 += t.w1[l][o];
    }
    CHECK(c == pr.ub);
    CHECK(u0 <= t.cap0);
    CHECK(u1 <= t.cap1);
    improved += better;
  }
  CHECK(improved > 0);
}
