// CSV reading (the allocate_bits format) and sensitivity measurement.

#include <adaquant/bitalloc/csv.hpp>
#include <adaquant/bitalloc/sensitivity.hpp>
#include <adaquant/bitalloc/solver.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <sstream>
#include <string>

using namespace adaquant;

namespace {
template <class F>
void expect_error(F&& f, errc code, const std::string& needle) {
  try {
    f();
    FAIL("no exception; expected '" << needle << "'");
  } catch (const adaquant::error& e) {
    INFO(e.what());
    CHECK(e.code() == code);
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}

bit_allocation_csv read(const std::string& text) {
  std::istringstream in(text);
  return read_bit_allocation_csv(in, "t.csv");
}

const std::string header = "layer,option,bits_w,bits_a,loss_delta,size_bytes,bops\n";
}  // namespace

TEST_CASE("read_bit_allocation_csv groups rows by layer and keeps option ids", "[bitalloc]") {
  const auto c = read(header +
                      "# comment\n"
                      "conv1,0,8,8,0,100,6400\r\n"
                      "fc,7,8,8,0,50,3200\n"
                      "\n"
                      "conv1,3,4,8,0.125,50,3200\n"
                      "\"odd, name\",1,2,4,1e-3,13,104\n");
  REQUIRE(c.problem.num_layers() == 3);
  CHECK(c.problem.layers[0].name == "conv1");
  CHECK(c.problem.layers[0].options.size() == 2);
  CHECK(c.ids[0] == std::vector<std::int64_t>{0, 3});
  CHECK(c.ids[1] == std::vector<std::int64_t>{7});
  CHECK(c.problem.layers[2].name == "odd, name");
  CHECK(c.problem.layers[0].options[1].loss_delta == 0.125);
  CHECK(c.problem.layers[0].options[1].resources == std::vector<double>{50, 3200});
  CHECK(c.problem.layers[2].options[0].bits == bit_config{2, 4});
}

TEST_CASE("malformed CSV lines get an error naming the line", "[bitalloc]") {
  expect_error([] { (void)read("layer,option,bits\nx,0,8\n"); }, errc::corrupt_data, "t.csv:1");
  expect_error([] { (void)read(header + "a,0,8,8,0,1,1\na,1,8,8,0,1\n"); }, errc::corrupt_data,
               "t.csv:3: expected 7 fields");
  expect_error([] { (void)read(header + "a,0,8,8,abc,1,1\n"); }, errc::corrupt_data,
               "t.csv:2: column loss_delta");
  expect_error([] { (void)read(header + "a,0,8,8,nan,1,1\n"); }, errc::corrupt_data, "t.csv:2");
  expect_error([] { (void)read(header + "a,0,8,8,-1,1,1\n"); }, errc::corrupt_data, "must be >= 0");
  expect_error([] { (void)read(header + "a,0,8,8,0,1.5,1\n"); }, errc::corrupt_data,
               "t.csv:2: column size_bytes");
  expect_error([] { (void)read(header + "a,0,8,8,0,1,-3\n"); }, errc::corrupt_data, "column bops");
  expect_error([] { (void)read(header + "a,0,0,8,0,1,1\n"); }, errc::corrupt_data, "column bits_w");
  expect_error([] { (void)read(header + "a,x,8,8,0,1,1\n"); }, errc::corrupt_data, "column option");
  expect_error([] { (void)read(header + ",0,8,8,0,1,1\n"); }, errc::corrupt_data,
               "empty layer name");
  expect_error([] { (void)read(header + "a,0,8,8,0,1,1\n\na,0,4,8,0,1,1\n"); }, errc::corrupt_data,
               "t.csv:4: duplicate option 0 for layer 'a' (first on line 2)");
  expect_error([] { (void)read(header + "\"a,0,8,8,0,1,1\n"); }, errc::corrupt_data,
               "unterminated");
  expect_error([] { (void)read(""); }, errc::empty_input, "no header");
  expect_error([] { (void)read(header); }, errc::empty_input, "no data rows");
  expect_error([] { (void)read(header + "a,0,8,8,0,99999999999999999999,1\n"); },
               errc::corrupt_data, "column size_bytes");
}

TEST_CASE("measure_sensitivity changes one layer at a time from the base", "[bitalloc]") {
  // an additive mock network: layer l at w bits costs s_l * 4^-w, plus a shared offset
  const double s[3] = {1.0, 4.0, 0.5};
  std::size_t calls = 0;
  auto eval = [&](std::span<const bit_config> cfg) {
    ++calls;
    double v = 0.125;
    for (std::size_t l = 0; l < cfg.size(); ++l)
      v += s[l] * std::pow(4.0, -cfg[l].bits_w) + 0.01 * std::pow(2.0, -cfg[l].bits_a);
    return v;
  };
  const bit_config cand[] = {{8, 8}, {4, 8}, {2, 8}, {4, 4}};
  const auto t = measure_sensitivity(eval, 3, cand);
  CHECK(calls == 1 + 3 * 3);  // the base candidate is not re-evaluated
  CHECK(t.evaluations == calls);
  CHECK(t.clamped == 0);
  for (std::size_t l = 0; l < 3; ++l) {
    CHECK(t.loss_delta[l][0] == 0.0);
    CHECK(t.loss_delta[l][1] == Approx(s[l] * (std::pow(4.0, -4) - std::pow(4.0, -8))));
    CHECK(t.loss_delta[l][3] == Approx(s[l] * (std::pow(4.0, -4) - std::pow(4.0, -8)) +
                                       0.01 * (std::pow(2.0, -4) - std::pow(2.0, -8))));
  }

  // end to end: for an additive network, the solver's objective is the true loss increase
  const layer_dims dims[3] = {{"a", 1000, 100000}, {"b", 4000, 40000}, {"c", 200, 2000000}};
  const auto p = make_bit_allocation_problem(t, dims);
  CHECK(p.layers[1].options[2].resources == std::vector<double>{1000, 40000.0 * 16});
  const double budgets[2] = {(1000 + 4000 + 200) * 4.0 / 8,
                             std::numeric_limits<double>::infinity()};
  const auto r = minimize_loss(p, budgets);
  REQUIRE(r.status == allocation_status::optimal);
  std::vector<bit_config> chosen;
  for (std::size_t l = 0; l < 3; ++l) chosen.push_back(p.layers[l].options[r.choice[l]].bits);
  CHECK(eval(chosen) - t.base_loss == Approx(r.objective));
}

TEST_CASE("measure_sensitivity clamps or rejects negative deltas and rejects bad input",
          "[bitalloc]") {
  auto noisy = [](std::span<const bit_config> cfg) { return cfg[0].bits_w == 4 ? 0.9 : 1.0; };
  const bit_config cand[] = {{8, 8}, {4, 8}};
  const auto t = measure_sensitivity(noisy, 2, cand);
  CHECK(t.clamped == 1);
  CHECK(t.loss_delta[0][1] == 0.0);
  expect_error(
      [&] {
        (void)measure_sensitivity(noisy, 2, cand, {8, 8}, negative_delta::fail);
      },
      errc::invalid_argument, "layer 0 at w4a8");
  auto bad = [](std::span<const bit_config> cfg) {
    return cfg[1].bits_w == 4 ? std::numeric_limits<double>::quiet_NaN() : 1.0;
  };
  expect_error([&] { (void)measure_sensitivity(bad, 2, cand); }, errc::non_finite,
               "measure_sensitivity: eval");
  expect_error([&] { (void)measure_sensitivity(noisy, 0, cand); }, errc::empty_input,
               "measure_sensitivity: num_layers");
  expect_error([&] { (void)measure_sensitivity(noisy, 2, std::span<const bit_config>{}); },
               errc::empty_input, "measure_sensitivity: candidates");
  const bit_config wrong[] = {{0, 8}};
  expect_error([&] { (void)measure_sensitivity(noisy, 2, wrong); }, errc::invalid_argument,
               "candidates[0]");
  const layer_dims one[1] = {{"a", 1, 1}};
  expect_error([&] { (void)make_bit_allocation_problem(t, one); }, errc::shape_mismatch,
               "make_bit_allocation_problem: dims");
}
