// The error contract: every bad input gets adaquant::error with its errc and a message naming the
// argument; infeasible budgets state the smallest achievable value of each budget.

#include <adaquant/bitalloc/solver.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

using namespace adaquant;

namespace {
constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double qnan = std::numeric_limits<double>::quiet_NaN();

bit_allocation_problem two_layers() {
  bit_allocation_problem p;
  p.resource_names = {"size_bytes", "bops"};
  p.layers.push_back({"conv1", {{{8, 8}, 0.0, {800, 6400}}, {{4, 8}, 0.5, {400, 3200}}}});
  p.layers.push_back({"fc", {{{8, 8}, 0.0, {1000, 8000}}, {{2, 8}, 2.0, {250, 2000}}}});
  return p;
}

template <class F>
void expect_error(F&& f, errc code, const std::string& needle) {
  try {
    f();
    FAIL("no exception; expected " << to_string(code) << " mentioning '" << needle << "'");
  } catch (const adaquant::error& e) {
    INFO(e.what());
    CHECK(e.code() == code);
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}
}  // namespace

TEST_CASE("malformed problems are rejected with the offending argument named", "[bitalloc]") {
  const double b[2] = {inf, inf};
  bit_allocation_problem empty;
  empty.resource_names = {"size_bytes", "bops"};
  expect_error([&] { (void)minimize_loss(empty, b); }, errc::empty_input, "minimize_loss: layers");

  auto p = two_layers();
  p.layers[1].options.clear();
  expect_error([&] { (void)minimize_loss(p, b); }, errc::empty_input, "layers[1] ('fc')");

  p = two_layers();
  p.layers[0].options[1].loss_delta = qnan;
  expect_error([&] { (void)minimize_loss(p, b); }, errc::non_finite, "options[1].loss_delta");

  p = two_layers();
  p.layers[0].options[1].loss_delta = inf;
  expect_error([&] { (void)minimize_loss(p, b); }, errc::non_finite, "loss_delta");

  p = two_layers();
  p.layers[1].options[0].loss_delta = -0.25;
  expect_error([&] { (void)minimize_loss(p, b); }, errc::invalid_argument,
               "layers[1] ('fc').options[0].loss_delta");

  p = two_layers();
  p.layers[1].options[1].resources[1] = -1;
  expect_error([&] { (void)minimize_loss(p, b); }, errc::invalid_argument, "(bops)");

  p = two_layers();
  p.layers[1].options[1].resources[0] = qnan;
  expect_error([&] { (void)minimize_loss(p, b); }, errc::non_finite, "(size_bytes)");

  p = two_layers();
  p.layers[0].options[0].resources.pop_back();
  expect_error([&] { (void)minimize_loss(p, b); }, errc::shape_mismatch, "options[0].resources");
}

TEST_CASE("bad budgets and options are rejected", "[bitalloc]") {
  const auto p = two_layers();
  expect_error([&] { (void)minimize_loss(p, {1000.0}); }, errc::shape_mismatch,
               "minimize_loss: budgets");
  expect_error(
      [&] {
        (void)minimize_loss(p, {qnan, inf});
      },
      errc::non_finite, "budgets[0] (size_bytes)");
  expect_error(
      [&] {
        (void)minimize_loss(p, {inf, -5.0});
      },
      errc::invalid_argument, "budgets[1] (bops)");
  const double b[2] = {inf, inf};
  expect_error([&] { (void)minimize_loss(p, b, {.relative_gap = -1}); }, errc::invalid_argument,
               "options.relative_gap");
  expect_error([&] { (void)minimize_loss(p, b, {.absolute_gap = qnan}); }, errc::non_finite,
               "options.absolute_gap");
  expect_error([&] { (void)minimize_loss(p, b, {.time_limit_seconds = 0}); },
               errc::invalid_argument, "options.time_limit_seconds");
  expect_error([&] { (void)minimize_loss(p, b, {.feasibility_tolerance = 2}); },
               errc::invalid_argument, "options.feasibility_tolerance");

  expect_error(
      [&] {
        (void)maximize_saving(p, qnan, {1.0, 0.0});
      },
      errc::non_finite, "maximize_saving: max_loss_delta");
  expect_error(
      [&] {
        (void)maximize_saving(p, -1, {1.0, 0.0});
      },
      errc::invalid_argument, "maximize_saving: max_loss_delta");
  expect_error([&] { (void)maximize_saving(p, 1, {1.0}); }, errc::shape_mismatch,
               "maximize_saving: weights");
  expect_error(
      [&] {
        (void)maximize_saving(p, 1, {0.0, 0.0});
      },
      errc::invalid_argument, "maximize_saving: weights");
  expect_error([&] { (void)maximize_saving(p, 1, {1.0, inf}); }, errc::non_finite, "weights[1]");
  expect_error(
      [&] {
        (void)maximize_saving(p, 1, {1.0, 0.0}, {1.0});
      },
      errc::shape_mismatch, "maximize_saving: budgets");
}

TEST_CASE("an infeasible budget states the smallest achievable value of each budget",
          "[bitalloc]") {
  const auto p = two_layers();  // smallest: size 650, bops 5200
  expect_error(
      [&] {
        (void)minimize_loss(p, {649.0, 1e9});
      },
      errc::infeasible, "budget 649 for size_bytes is below the smallest achievable 650");
  expect_error(
      [&] {
        (void)minimize_loss(p, {649.0, 1e9});
      },
      errc::infeasible, "bops <= 1000000000 (smallest achievable 5200)");
  expect_error(
      [&] {
        (void)minimize_loss(p, {100.0, 100.0});
      },
      errc::infeasible, "budget 100 for bops is below the smallest achievable 5200");
  // at the exact minimum it is feasible
  const auto r = minimize_loss(p, {650.0, inf});
  CHECK(r.objective == 2.5);
  // the dual form: the loss bound below the least achievable loss
  expect_error(
      [&] {
        (void)maximize_saving(p, -0.0 + 0.0, {1.0, 0.0}, {100.0, inf});
      },
      errc::infeasible, "size_bytes");
}

TEST_CASE("budgets achievable alone but not together are reported as jointly infeasible",
          "[bitalloc]") {
  bit_allocation_problem p;
  p.resource_names = {"a", "b"};
  // each layer: either light in a or light in b
  for (int l = 0; l < 3; ++l)
    p.layers.push_back({"l" + std::to_string(l), {{{8, 8}, 0.0, {10, 0}}, {{4, 8}, 0.0, {0, 10}}}});
  expect_error(
      [&] {
        (void)minimize_loss(p, {10.0, 10.0});
      },
      errc::infeasible, "no choice meets all budgets together");
  CHECK(minimize_loss(p, {10.0, 20.0}).status == allocation_status::optimal);
}

TEST_CASE("degenerate but valid problems", "[bitalloc]") {
  bit_allocation_problem p;  // no resources at all: the least loss per layer
  p.layers.push_back({"a", {{{8, 8}, 0.5, {}}, {{4, 8}, 0.25, {}}}});
  p.layers.push_back({"b", {{{8, 8}, 0.0, {}}}});
  const auto r = minimize_loss(p, std::span<const double>{});
  CHECK(r.status == allocation_status::optimal);
  CHECK(r.choice == std::vector<std::size_t>{1, 0});
  CHECK(r.objective == 0.25);
  CHECK(r.gap() == 0.0);

  // zero budget with zero-cost options
  bit_allocation_problem z;
  z.resource_names = {"size"};
  z.layers.push_back({"a", {{{8, 8}, 0.0, {5}}, {{1, 1}, 3.0, {0}}}});
  const auto rz = minimize_loss(z, {0.0});
  CHECK(rz.choice == std::vector<std::size_t>{1});
}
