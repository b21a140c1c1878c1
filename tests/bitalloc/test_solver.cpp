// The exact solver against straightforward references: exhaustive enumeration on thousands of
// small random instances (both forms, 0-3 budgets, ties, integer and fractional data), the DP for
// one integer budget, and limits that must report a valid gap.

#include <adaquant/bitalloc/solver.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "support/reference.hpp"
#include "support/synthetic.hpp"

using namespace adaquant;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

struct rng {
  detail::splitmix64 s;
  explicit rng(std::uint64_t seed) : s{seed} {}
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(s.next() % n); }
  double uniform() { return s.uniform(); }
};

// Small random problem. Values are dyadic (k / 8) or integers so that sums are exact and the
// reference's comparisons agree with the solver's bit for bit; ties are frequent on purpose.
bit_allocation_problem random_problem(rng& g, std::size_t layers, std::size_t max_opts,
                                      std::size_t R, bool integral) {
  bit_allocation_problem p;
  for (std::size_t r = 0; r < R; ++r) p.resource_names.push_back("r" + std::to_string(r));
  for (std::size_t l = 0; l < layers; ++l) {
    bit_allocation_layer layer;
    layer.name = "L" + std::to_string(l);
    const std::size_t m = 1 + g.below(max_opts);
    for (std::size_t o = 0; o < m; ++o) {
      bit_option opt;
      opt.loss_delta = static_cast<double>(g.below(64)) / 8.0;
      for (std::size_t r = 0; r < R; ++r)
        opt.resources.push_back(integral ? static_cast<double>(g.below(21))
                                         : static_cast<double>(g.below(161)) / 8.0);
      layer.options.push_back(opt);
    }
    p.layers.push_back(layer);
  }
  return p;
}

struct tables {
  std::vector<std::vector<double>> loss;
  std::vector<std::vector<std::vector<double>>> res;  // [r][l][o]
};

tables to_tables(const bit_allocation_problem& p) {
  tables t;
  t.res.resize(p.num_resources());
  for (const auto& layer : p.layers) {
    t.loss.emplace_back();
    for (auto& r : t.res) r.emplace_back();
    for (const auto& o : layer.options) {
      t.loss.back().push_back(o.loss_delta);
      for (std::size_t r = 0; r < p.num_resources(); ++r) t.res[r].back().push_back(o.resources[r]);
    }
  }
  return t;
}

std::vector<double> sum_range(const bit_allocation_problem& p, std::size_t r, bool take_max) {
  double mn = 0, mx = 0;
  for (const auto& layer : p.layers) {
    double a = inf, b = 0;
    for (const auto& o : layer.options) {
      a = std::min(a, o.resources[r]);
      b = std::max(b, o.resources[r]);
    }
    mn += a;
    mx += b;
  }
  return {mn, take_max ? mx : mn};
}

// Checks the result's bookkeeping: choice, totals, budgets, bound.
void check_consistent(const bit_allocation_problem& p, const bit_allocation_result& r,
                      std::span<const double> budgets) {
  REQUIRE(r.choice.size() == p.num_layers());
  double loss = 0;
  std::vector<double> use(p.num_resources(), 0.0);
  for (std::size_t l = 0; l < p.num_layers(); ++l) {
    REQUIRE(r.choice[l] < p.layers[l].options.size());
    const auto& o = p.layers[l].options[r.choice[l]];
    loss += o.loss_delta;
    for (std::size_t k = 0; k < use.size(); ++k) use[k] += o.resources[k];
  }
  CHECK(loss == Approx(r.loss_delta).margin(1e-12));
  for (std::size_t k = 0; k < use.size(); ++k) {
    CHECK(use[k] == Approx(r.resources[k]).margin(1e-9));
    if (k < budgets.size()) CHECK(use[k] <= budgets[k] * (1 + 1e-9) + 1e-9);
  }
  CHECK(r.lower_bound <= r.objective);
}

}  // namespace

TEST_CASE("minimize_loss equals exhaustive enumeration on random small instances", "[bitalloc]") {
  rng g(12345);
  int solved = 0, infeasible = 0;
  for (int it = 0; it < 3000; ++it) {
    const std::size_t R = g.below(4);  // 0..3 budgets
    const bool integral = g.below(2) == 0;
    const auto p = random_problem(g, 1 + g.below(6), 4, R, integral);
    const auto t = to_tables(p);
    std::vector<double> budgets(R);
    for (std::size_t r = 0; r < R; ++r) {
      const auto lo_hi = sum_range(p, r, true);
      // mostly feasible, sometimes just below the minimum, sometimes unconstrained
      const double f = g.uniform() * 1.1 - 0.05;
      budgets[r] =
          g.below(10) == 0 ? inf : std::floor((lo_hi[0] + f * (lo_hi[1] - lo_hi[0])) * 8) / 8;
      if (budgets[r] < 0) budgets[r] = 0;
    }
    const auto ref = detail::enumerate_min(t.loss, t.res, budgets);
    INFO("iteration " << it << " R " << R);
    if (!ref.feasible) {
      CHECK_THROWS_MATCHES(minimize_loss(p, budgets), adaquant::error,
                           Catch::Predicate<adaquant::error>([](const adaquant::error& e) {
                             return e.code() == errc::infeasible;
                           }));
      ++infeasible;
      continue;
    }
    const auto r = minimize_loss(p, budgets);
    REQUIRE(r.status == allocation_status::optimal);
    CHECK(r.objective == Approx(ref.objective).margin(1e-12));
    check_consistent(p, r, budgets);
    ++solved;
  }
  CHECK(solved > 2000);
  CHECK(infeasible > 20);
}

TEST_CASE("maximize_saving equals exhaustive enumeration of the dual form", "[bitalloc]") {
  rng g(777);
  for (int it = 0; it < 1500; ++it) {
    const std::size_t R = 1 + g.below(2);
    const auto p = random_problem(g, 1 + g.below(6), 4, R, true);
    auto t = to_tables(p);
    std::vector<double> weights(R);
    for (auto& w : weights) w = static_cast<double>(g.below(3));
    if (weights[0] == 0 && (R == 1 || weights[1] == 0)) weights[0] = 1;
    double lmin = 0, lmax = 0;
    for (const auto& l : t.loss) {
      lmin += *std::min_element(l.begin(), l.end());
      lmax += *std::max_element(l.begin(), l.end());
    }
    const double bound = std::floor((lmin + g.uniform() * (lmax - lmin)) * 8) / 8;
    std::vector<double> budgets(R, inf);
    if (R == 2 && g.below(2)) budgets[1] = sum_range(p, 1, true)[1];  // an inactive extra budget
    // reference: cost = weighted resources; rows = loss (+ budgets)
    std::vector<std::vector<double>> cost;
    double reference = 0;
    for (std::size_t l = 0; l < p.num_layers(); ++l) {
      cost.emplace_back();
      double mx = 0;
      for (const auto& o : p.layers[l].options) {
        double c = 0;
        for (std::size_t r = 0; r < R; ++r) c += weights[r] * o.resources[r];
        cost.back().push_back(c);
        mx = std::max(mx, c);
      }
      reference += mx;
    }
    std::vector<std::vector<std::vector<double>>> rows{t.loss};
    std::vector<double> caps{bound};
    if (R == 2 && budgets[1] < inf) {
      rows.push_back(t.res[1]);
      caps.push_back(budgets[1]);
    }
    const auto ref = detail::enumerate_min(cost, rows, caps);
    REQUIRE(ref.feasible);  // bound >= the least total loss
    INFO("iteration " << it);
    const auto r = maximize_saving(p, bound, weights, budgets);
    REQUIRE(r.status == allocation_status::optimal);
    CHECK(r.objective == Approx(ref.objective).margin(1e-12));
    CHECK(r.saving == Approx(reference - ref.objective).margin(1e-9));
    CHECK(r.loss_delta <= bound);
  }
}

TEST_CASE("one integer budget: the solver equals the dynamic program", "[bitalloc]") {
  rng g(99);
  for (int it = 0; it < 200; ++it) {
    bit_allocation_problem p;
    p.resource_names = {"size"};
    std::vector<std::vector<double>> cost;
    std::vector<std::vector<std::int64_t>> weight;
    const std::size_t L = 5 + g.below(36);
    std::int64_t lo = 0, hi = 0;
    for (std::size_t l = 0; l < L; ++l) {
      bit_allocation_layer layer;
      cost.emplace_back();
      weight.emplace_back();
      std::int64_t mn = 1000, mx = 0;
      for (std::size_t o = 0, m = 1 + g.below(8); o < m; ++o) {
        const auto w = static_cast<std::int64_t>(g.below(60));
        const double c = g.uniform();  // arbitrary doubles: no exactness by construction
        layer.options.push_back({{8, 8}, c, {static_cast<double>(w)}});
        cost.back().push_back(c);
        weight.back().push_back(w);
        mn = std::min(mn, w);
        mx = std::max(mx, w);
      }
      lo += mn;
      hi += mx;
      p.layers.push_back(layer);
    }
    const auto cap = lo + static_cast<std::int64_t>(g.uniform() * static_cast<double>(hi - lo));
    const auto ref = detail::dp_min(cost, weight, cap);
    REQUIRE(ref.feasible);
    const auto r = minimize_loss(p, {static_cast<double>(cap)});
    INFO("iteration " << it);
    REQUIRE(r.status == allocation_status::optimal);
    CHECK(r.objective == Approx(ref.objective).epsilon(1e-9).margin(1e-12));
    CHECK(r.resources[0] <= static_cast<double>(cap));
  }
}

TEST_CASE("synthetic networks: one and two budgets solve to proven optimality", "[bitalloc]") {
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    const auto s = make_synthetic_bit_allocation(60, seed);
    const double one[2] = {s.size_budget, inf};
    const double two[2] = {s.size_budget, s.bops_budget};
    const auto r1 = minimize_loss(s.problem, one);
    CHECK(r1.status == allocation_status::optimal);
    check_consistent(s.problem, r1, one);
    const auto r2 = minimize_loss(s.problem, two, {.node_limit = 300'000});
    CHECK(r2.status != allocation_status::no_solution);
    check_consistent(s.problem, r2, two);
    CHECK(r2.objective >= r1.objective - 1e-12);  // a second budget can only cost loss
  }
}

TEST_CASE("a node limit stops the search with a valid gap, reproducibly", "[bitalloc]") {
  rng g(4242);
  int stopped = 0;
  for (int it = 0; it < 400; ++it) {
    const auto p = random_problem(g, 6, 4, 2, true);
    const auto t = to_tables(p);
    std::vector<double> budgets(2);
    for (std::size_t r = 0; r < 2; ++r) {
      const auto lh = sum_range(p, r, true);
      budgets[r] = std::floor(lh[0] + 0.4 * (lh[1] - lh[0]));
    }
    const auto ref = detail::enumerate_min(t.loss, t.res, budgets);
    if (!ref.feasible) continue;
    const auto r = minimize_loss(p, budgets, {.node_limit = 1});
    if (r.status == allocation_status::no_solution) {
      CHECK(r.lower_bound <= ref.objective + 1e-12);
      continue;
    }
    if (r.status == allocation_status::gap) ++stopped;
    CHECK(r.lower_bound <= ref.objective + 1e-12);  // the bound is proven
    CHECK(r.objective >= ref.objective - 1e-12);    // the solution is real
    check_consistent(p, r, budgets);
    const auto again = minimize_loss(p, budgets, {.node_limit = 1});
    CHECK(again.choice == r.choice);
    CHECK(again.lower_bound == r.lower_bound);
    CHECK(again.nodes == r.nodes);
  }
  CHECK(stopped > 0);

  // on a large two-budget network a tiny limit leaves a gap that is reported honestly
  const auto s = make_synthetic_bit_allocation(1000, 7);
  const double two[2] = {s.size_budget, s.bops_budget};
  const auto r = minimize_loss(s.problem, two, {.node_limit = 10});
  REQUIRE(r.status != allocation_status::no_solution);
  CHECK(r.gap() >= 0.0);
  CHECK(r.lower_bound <= r.objective);
  if (r.status == allocation_status::gap) CHECK(r.gap() > 1e-9 * r.objective);
  const auto r2 = minimize_loss(s.problem, two, {.node_limit = 10});
  CHECK(r2.choice == r.choice);
  CHECK(r2.objective == r.objective);
}

TEST_CASE("relative_gap lets the search stop early within the promised gap", "[bitalloc]") {
  const auto s = make_synthetic_bit_allocation(300, 3);
  const double one[2] = {s.size_budget, inf};
  const auto exact = minimize_loss(s.problem, one);
  const auto loose = minimize_loss(s.problem, one, {.relative_gap = 1e-3});
  REQUIRE(loose.status == allocation_status::optimal);
  CHECK(loose.objective <= exact.objective * (1 + 1e-3) + 1e-15);
  CHECK(loose.lower_bound <= exact.objective + 1e-15);
}

TEST_CASE("results are deterministic", "[bitalloc]") {
  const auto s = make_synthetic_bit_allocation(500, 11);
  const double two[2] = {s.size_budget, s.bops_budget};
  const auto a = minimize_loss(s.problem, two, {.node_limit = 20000});
  const auto b = minimize_loss(s.problem, two, {.node_limit = 20000});
  CHECK(a.choice == b.choice);
  CHECK(a.objective == b.objective);
  CHECK(a.lower_bound == b.lower_bound);
  CHECK(a.nodes == b.nodes);
}

TEST_CASE("two budgets: partial backward completion sets joined to forward states", "[bitalloc]") {
  // A node limit makes the backward completion set cover only the last layers, so the forward
  // states meet it in the middle; whatever finishes must match enumeration.
  rng g(2024);
  int optimal = 0;
  for (int it = 0; it < 400; ++it) {
    const auto p = random_problem(g, 11, 3, 2, g.below(2) == 0);
    const auto t = to_tables(p);
    std::vector<double> budgets(2);
    for (std::size_t r = 0; r < 2; ++r) {
      const auto lh = sum_range(p, r, true);
      budgets[r] = std::floor((lh[0] + 0.45 * (lh[1] - lh[0])) * 8) / 8;
    }
    const auto ref = detail::enumerate_min(t.loss, t.res, budgets);
    if (!ref.feasible) continue;
    for (std::uint64_t limit : {100u, 300u, 1000u, 3000u}) {
      const auto r = minimize_loss(p, budgets, {.node_limit = limit});
      INFO("iteration " << it << " limit " << limit);
      CHECK(r.lower_bound <= ref.objective + 1e-12);
      if (r.status == allocation_status::no_solution) continue;
      CHECK(r.objective >= ref.objective - 1e-12);
      if (r.status == allocation_status::optimal) {
        CHECK(r.objective == Approx(ref.objective).margin(1e-12));
        ++optimal;
      }
    }
  }
  CHECK(optimal > 200);
}

TEST_CASE("a node limit acts only where the search reaches it, and stops the search there",
          "[bitalloc]") {
  // A limit the run never reaches leaves every output bit-identical to the unlimited run (with two
  // budgets the backward set is capped at 2^21 points, so the limit must clear twice that). A
  // limit it reaches stops it within one layer's children of the limit, with a proven bound.
  rng g(31337);
  int stopped = 0;
  for (int it = 0; it < 300; ++it) {
    const std::size_t R = 1 + g.below(3);
    const auto p = random_problem(g, 4 + g.below(5), 5, R, g.below(2) == 0);
    const auto t = to_tables(p);
    std::vector<double> budgets(R);
    for (std::size_t r = 0; r < R; ++r) {
      const auto lh = sum_range(p, r, true);
      budgets[r] = std::floor((lh[0] + 0.4 * (lh[1] - lh[0])) * 8) / 8;
    }
    const auto ref = detail::enumerate_min(t.loss, t.res, budgets);
    if (!ref.feasible) continue;
    INFO("iteration " << it << " R " << R);
    const auto full = minimize_loss(p, budgets);
    REQUIRE(full.status == allocation_status::optimal);
    CHECK(full.objective == Approx(ref.objective).margin(1e-12));
    const auto unreached =
        minimize_loss(p, budgets, {.node_limit = (std::uint64_t{1} << 23) + 2 * full.nodes});
    CHECK(unreached.status == full.status);
    CHECK(unreached.choice == full.choice);
    CHECK(unreached.objective == full.objective);
    CHECK(unreached.lower_bound == full.lower_bound);
    CHECK(unreached.nodes == full.nodes);
    std::size_t max_options = 0;
    for (const auto& layer : p.layers) max_options = std::max(max_options, layer.options.size());
    for (std::uint64_t limit : {std::uint64_t{1}, full.nodes / 2, full.nodes - 1}) {
      if (limit == 0 || limit >= full.nodes) continue;
      const auto r = minimize_loss(p, budgets, {.node_limit = limit});
      CHECK(r.lower_bound <= ref.objective + 1e-12);
      if (r.status == allocation_status::no_solution) continue;
      CHECK(r.objective >= ref.objective - 1e-12);
      if (r.status != allocation_status::gap) continue;
      ++stopped;
      CHECK(r.nodes >= limit);
      CHECK(r.nodes < limit + max_options);
    }
  }
  CHECK(stopped > 50);
}
