// The loader's error contract: every malformed or unsupported model is refused with the right
// error code and a message naming the file and the node or tensor.
#include "onnx_test_util.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

using namespace onnx_test;
using adaquant::errc;

namespace {
// The error code and message of compiling `b` (with per-sample input shapes `shapes`).
struct failure {
  errc code = errc::invalid_argument;
  std::string message;
  bool unsupported = false;
};
failure fail_of(const builder& b, std::vector<aq::shape_t> shapes = {}, bool batch = true,
                aq::exec_limits limits = {}) {
  try {
    aq::compile_options co;
    co.sample_shapes = std::move(shapes);
    co.batch_axis = batch;
    co.limits = limits;
    (void)aq::graph::compile(b.load("bad.onnx"), co);
  } catch (const aq::unsupported& e) {
    return {e.code(), e.what(), true};
  } catch (const adaquant::error& e) {
    return {e.code(), e.what(), false};
  }
  FAIL("no error");
  return {};
}
bool has(const failure& f, const std::string& s) { return f.message.find(s) != std::string::npos; }

builder relu_model(std::int64_t opset = 13) {
  builder b(opset);
  b.input("x", {-1, 3});
  b.node("Relu", {"x"}, {"y"}, "act");
  b.output("y");
  return b;
}
}  // namespace

TEST_CASE("a valid model loads and runs", "[onnx][loader]") {
  const auto m = relu_model().load();
  CHECK(m.opset == 13);
  CHECK(m.inputs == std::vector<std::string>{"x"});
  const auto g = aq::graph::compile(m);
  const auto y = g.forward({aq::tensor({2, 3}, {-1, 2, -3, 4, -5, 6})}).at(0);
  CHECK(y.f == std::vector<float>{0, 2, 0, 4, 0, 6});
}

TEST_CASE("unreadable, oversized and non-protobuf files are corrupt data", "[onnx][loader]") {
  try {
    (void)aq::load_model("/nonexistent/model.onnx");
    FAIL("no error");
  } catch (const adaquant::error& e) {
    CHECK(e.code() == errc::corrupt_data);
    CHECK(std::string(e.what()).find("/nonexistent/model.onnx") != std::string::npos);
  }
  const std::string garbage = "\xff\xff\xff\xff this is not a protobuf";
  const auto span = std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(garbage.data()), garbage.size());
  CHECK_THROWS_MATCHES(aq::load_model_from_bytes(span, "junk.onnx"), adaquant::error,
                       Catch::Matchers::Predicate<adaquant::error>([](const adaquant::error& e) {
                         return e.code() == errc::corrupt_data && std::string(e.what()).find("junk.onnx") != std::string::npos;
                       }));
  const std::string ok = relu_model().bytes();
  aq::load_options small;
  small.max_file_bytes = 8;
  CHECK_THROWS_AS(aq::load_model_from_bytes(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(ok.data()), ok.size()), "big.onnx", small),
                  adaquant::error);
}

TEST_CASE("opsets outside 9..21 and a missing default domain are refused", "[onnx][loader]") {
  for (const std::int64_t opset : {8, 22}) {
    try {
      (void)relu_model(opset).load("old.onnx");
      FAIL("no error");
    } catch (const adaquant::error& e) {
      CHECK(e.code() == errc::invalid_argument);
      CHECK(std::string(e.what()).find("opset " + std::to_string(opset)) != std::string::npos);
    }
  }
  builder b = relu_model();
  b.m.mutable_opset_import(0)->set_domain("com.example");
  CHECK_THROWS_AS(b.load(), adaquant::error);
}

TEST_CASE("unknown ops and other domains name the op type and the node", "[onnx][loader]") {
  builder b;
  b.input("x", {-1, 3});
  b.node("Einsum", {"x"}, {"y"}, "mystery_node");
  b.output("y");
  const auto f = fail_of(b);
  CHECK(f.unsupported);
  CHECK(f.code == errc::invalid_argument);
  CHECK(has(f, "Einsum"));
  CHECK(has(f, "mystery_node"));
  CHECK(has(f, "bad.onnx"));
  builder c = relu_model();
  c.g().mutable_node(0)->set_domain("com.microsoft");
  CHECK(fail_of(c).unsupported);
}

TEST_CASE("initializer sizes must match the bytes present", "[onnx][loader]") {
  const auto model_with = [](const std::function<void(P&)>& edit) {
    builder b;
    b.input("x", {-1, 2});
    P& w = b.init_f("weights", {2}, {1, 2});
    edit(w);
    b.node("Add", {"x", "weights"}, {"y"}, "add");
    b.output("y");
    return b;
  };
  // float_data holds 2 values, dims say 3.
  auto f = fail_of(model_with([](P& t) { t.set_dims(0, 3); }));
  CHECK(f.code == errc::corrupt_data);
  CHECK(has(f, "weights"));
  CHECK(has(f, "bad.onnx"));
  // raw_data of 7 bytes for 2 floats.
  f = fail_of(model_with([](P& t) {
    t.clear_float_data();
    t.set_raw_data(std::string(7, '\0'));
  }));
  CHECK(f.code == errc::corrupt_data);
  CHECK(has(f, "raw_data"));
  // Dims whose product overflows, and a negative extent.
  f = fail_of(model_with([](P& t) {
    t.clear_dims();
    for (int k = 0; k < 4; ++k) t.add_dims(std::int64_t{1} << 20);
  }));
  CHECK(f.code == errc::corrupt_data);
  f = fail_of(model_with([](P& t) { t.set_dims(0, -2); }));
  CHECK(f.code == errc::corrupt_data);
  // Element type the executor does not hold (STRING).
  f = fail_of(model_with([](P& t) { t.set_data_type(P::STRING); }));
  CHECK(f.unsupported);
  CHECK(has(f, "weights"));
}

TEST_CASE("external data is refused, naming the tensor", "[onnx][loader]") {
  builder b;
  b.input("x", {-1, 2});
  P& w = b.init_f("big_weight", {2}, {});
  w.set_data_location(P::EXTERNAL);
  auto* e = w.add_external_data();
  e->set_key("location");
  e->set_value("weights.bin");
  b.node("Add", {"x", "big_weight"}, {"y"});
  b.output("y");
  const auto f = fail_of(b);
  CHECK(f.code == errc::invalid_argument);
  CHECK(has(f, "big_weight"));
  CHECK(has(f, "external"));
}

TEST_CASE("non-finite initializers are errors naming the tensor", "[onnx][loader]") {
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    builder b;
    b.input("x", {-1, 2});
    b.init_f("scale", {2}, {1, bad});
    b.node("Mul", {"x", "scale"}, {"y"});
    b.output("y");
    const auto f = fail_of(b);
    CHECK(f.code == errc::corrupt_data);
    CHECK(has(f, "scale"));
    CHECK(has(f, "non-finite"));
  }
}

TEST_CASE("graph structure errors: undefined values, redefinitions, missing outputs", "[onnx][loader]") {
  builder b;
  b.input("x", {-1, 2});
  b.node("Add", {"x", "nowhere"}, {"y"}, "adder");
  b.output("y");
  auto f = fail_of(b);
  CHECK(f.code == errc::corrupt_data);
  CHECK(has(f, "nowhere"));
  CHECK(has(f, "adder"));
  builder c = relu_model();
  c.g().mutable_output(0)->set_name("not_there");
  CHECK(fail_of(c).code == errc::corrupt_data);
  builder d = relu_model();
  d.node("Relu", {"x"}, {"y"}, "again");
  CHECK(fail_of(d).code == errc::corrupt_data);
}

TEST_CASE("shapes that do not fit an op are shape mismatches naming the node", "[onnx][loader]") {
  builder b;
  b.input("x", {-1, 3, 4, 4});
  b.init_f("w", {2, 2, 1, 1}, {1, 1, 1, 1});
  b.node("Conv", {"x", "w"}, {"y"}, "conv_wrong_channels");
  b.output("y");
  auto f = fail_of(b, {{3, 4, 4}});
  CHECK(f.code == errc::shape_mismatch);
  CHECK(has(f, "conv_wrong_channels"));
  CHECK(has(f, "bad.onnx"));
  builder r;
  r.input("x", {-1, 6});
  r.init_i("s", {2}, {4, 4});
  r.node("Reshape", {"x", "s"}, {"y"}, "bad_reshape");
  r.output("y");
  f = fail_of(r, {{6}});
  CHECK(f.code == errc::shape_mismatch);
  CHECK(has(f, "bad_reshape"));
  // A symbolic extent besides the sample axis needs a given per-sample shape.
  builder s;
  s.input("x", {-1, -1});
  s.node("Relu", {"x"}, {"y"});
  s.output("y");
  CHECK(fail_of(s).code == errc::invalid_argument);
}

TEST_CASE("declared sizes cannot make execution allocate without bound", "[onnx][loader]") {
  builder b;
  b.input("x", {-1, 2});
  b.init_i("shape", {3}, {1 << 20, 1 << 20, 1 << 20});
  b.node("ConstantOfShape", {"shape"}, {"huge"}, "alloc");
  b.node("Add", {"x", "huge"}, {"y"});
  b.output("y");
  const auto f = fail_of(b, {{2}});
  CHECK((f.code == errc::invalid_argument || f.code == errc::corrupt_data));
  CHECK(has(f, "alloc"));
  builder c;
  c.input("x", {-1, 2});
  c.init_i("shape", {2}, {4096, 4096});
  c.node("ConstantOfShape", {"shape"}, {"big"}, "alloc2");
  c.node("Add", {"x", "big"}, {"y"});
  c.output("y");
  aq::exec_limits lim;
  lim.max_elements = 1 << 20;
  CHECK(has(fail_of(c, {{2}}, true, lim), "limit"));
}

TEST_CASE("load_model reads a file from disk", "[onnx][loader]") {
  const auto path = std::filesystem::temp_directory_path() / "adaquant_onnx_loader_test.onnx";
  {
    std::ofstream out(path, std::ios::binary);
    out << relu_model().bytes();
  }
  const auto m = aq::load_model(path);
  CHECK(m.source == path.string());
  std::filesystem::remove(path);
}

TEST_CASE("a node without its required input is refused (found by fuzz_onnx)", "[onnx][loader]") {
  builder b;
  b.input("x", {-1, 2});
  b.node("ReduceMean", {}, {"y"}, "no_inputs");
  b.node("Add", {"x", "y"}, {"z"});
  b.output("z");
  const auto f = fail_of(b, {{2}});
  CHECK(f.code == errc::shape_mismatch);
  CHECK(has(f, "no_inputs"));
}
