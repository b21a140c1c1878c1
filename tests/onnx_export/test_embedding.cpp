// Embedding tables quantized per row (onnx/embedding.hpp, onnx/export/embedding.hpp): which Gathers
// are tables, the per-row fake quantization against an explicit row-by-row one, the simulated
// network against the float network with the quantized table, the export through the independent
// reference interpreter, the encodings, and the errors.

#include <adaquant/onnx/encodings.hpp>
#include <adaquant/onnx/network.hpp>

#include "../support/expect_error.hpp"
#include "support/inspect.hpp"
#include "support/models.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

namespace aq = adaquant;
namespace ax = adaquant::onnx;
using namespace test_onnx;
using adaquant_test::expect_error;

namespace {

constexpr std::int64_t vocab = 11, width = 6, tokens = 5;

// ids [N, 5] (int64) -> Gather(emb [11, 6]) -> e [N, 5, 6] -> MatMul(w [6, 4]) -> y [N, 5, 4]
// plus tables that stay float: a 3-D one, and one read by two Gathers.
// Row 0 of emb is zeros (a padding token's row).
onnx::ModelProto make_embedding_model(const std::vector<float>& table) {
  onnx::ModelProto m = empty_model(17);
  m.set_ir_version(8);
  auto& g = *m.mutable_graph();
  add_io(g.add_input(), "ids", {-1, tokens}, 7);
  for (const char* o : {"y", "e", "c", "s1", "s2"}) g.add_output()->set_name(o);
  *g.add_initializer() = float_tensor("emb", {vocab, width}, table);
  *g.add_initializer() = float_tensor("w", {width, 4}, random_floats(width * 4, -1, 1, 3));
  *g.add_initializer() = float_tensor("cube", {vocab, 2, 2}, random_floats(vocab * 4, -1, 1, 4));
  *g.add_initializer() = float_tensor("shared", {vocab, 3}, random_floats(vocab * 3, -1, 1, 5));
  add_node(g, "Gather", "tok", {"emb", "ids"}, {"e"});
  add_node(g, "MatMul", "proj", {"e", "w"}, {"y"});
  add_node(g, "Gather", "cube_gather", {"cube", "ids"}, {"c"});
  add_node(g, "Gather", "shared_1", {"shared", "ids"}, {"s1"});
  add_node(g, "Gather", "shared_2", {"shared", "ids"}, {"s2"});
  return m;
}

std::vector<float> table_values() {
  std::vector<float> t = random_floats(vocab * width, -0.8f, 1.3f, 1);
  std::fill(t.begin(), t.begin() + width, 0.0f);
  for (std::int64_t c = 0; c < width; ++c) t[3 * width + c] *= 10.0f;  // one row far larger
  return t;
}

ax::model load(const onnx::ModelProto& m) {
  const std::string b = m.SerializeAsString();
  return ax::load_model_from_bytes(
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(b.data()), b.size()),
      "embedding.onnx");
}

ax::tensor ids_tensor(std::int64_t n, std::uint32_t seed) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n * tokens));
  std::mt19937 gen(seed);
  for (auto& x : v) x = static_cast<std::int64_t>(gen() % vocab);
  v[0] = 0;
  v[1] = 3;
  return ax::tensor(ax::dtype::int64, {n, tokens}, std::move(v));
}

aq::quantizer_spec row_spec(int bits, bool symmetric, aq::range_method r) {
  aq::quantizer_spec s{{bits, true, symmetric, false}, aq::granularity::per_channel(0)};
  s.rounding = aq::rounding_mode::onnx;
  s.range = r;
  return s;
}

}  // namespace

TEST_CASE("Gathers of a constant 2-D initializer are embedding tables; the others are reported") {
  const std::vector<float> t = table_values();
  const ax::model m = load(make_embedding_model(t));
  ax::onnx_network net(m, {ids_tensor(4, 7)});
  const ax::embedding_scan& s = net.embeddings();
  REQUIRE(s.tables.size() == 1);
  CHECK(s.tables[0].node_name == "tok");
  CHECK(s.tables[0].initializer == "emb");
  CHECK(s.tables[0].rows == vocab);
  CHECK(s.tables[0].cols == width);
  REQUIRE(s.skipped.size() == 3);
  CHECK(s.skipped[0].node == "cube_gather");
  CHECK_THAT(s.skipped[0].reason, Catch::Contains("the table [11, 2, 2] is not 2-D"));
  for (std::size_t k : {1, 2})
    CHECK_THAT(s.skipped[k].reason, Catch::Contains("'shared' is read by other nodes too"));

  // A network that takes the model by move (adaquant_ptq's way) finds the same tables.
  ax::model moved_model = load(make_embedding_model(t));
  ax::onnx_network moved(std::move(moved_model), {ids_tensor(4, 7)});
  REQUIRE(moved.embeddings().tables.size() == 1);
  CHECK(moved.embeddings().tables[0].initializer == "emb");
  CHECK(moved.embeddings().skipped.size() == 3);
}

TEST_CASE("Per-row quantization equals quantizing each row as a tensor of its own") {
  const std::vector<float> t = table_values();
  const ax::model m = load(make_embedding_model(t));
  ax::onnx_network net(m, {ids_tensor(4, 7)});
  const ax::embedding_table& et = net.embeddings().tables.at(0);
  const ax::tensor& values = *net.full_precision().constant_value(et.value);
  for (const int bits : {2, 4, 8})
    for (const bool symmetric : {true, false})
      for (const auto r : {aq::range_method::min_max, aq::range_method::mse}) {
        INFO("bits " << bits << " symmetric " << symmetric << " range " << aq::to_string(r));
        const aq::quantizer_spec spec = row_spec(bits, symmetric, r);
        const ax::quantized_embedding q = ax::quantize_embedding(et, values, spec);
        REQUIRE(q.params.channels() == vocab);
        aq::quantizer_spec one = spec;
        one.gran = aq::granularity::per_tensor();
        for (std::size_t row = 0; row < vocab; ++row) {
          const std::vector<float> x(t.begin() + static_cast<std::ptrdiff_t>(row * width),
                                     t.begin() + static_cast<std::ptrdiff_t>((row + 1) * width));
          std::vector<float> want(width);
          if (row == 0) {  // an all-zero row stays zero (scale FLT_EPSILON)
            CHECK(q.params.scale[0] == std::numeric_limits<float>::epsilon());
          } else {
            const aq::quant_params p = aq::estimate_tensor_params(x, one);
            CHECK(q.params.scale[row] == p.scale);
            CHECK(q.params.zero_point[row] == p.zero_point);
            if (symmetric) CHECK(p.zero_point == 0);
          }
          aq::fake_quant_per_tensor<aq::round_onnx>(x, want, q.params.channel(row));
          CHECK(same_bits(
              std::vector<float>(q.table.begin() + static_cast<std::ptrdiff_t>(row * width),
                                 q.table.begin() + static_cast<std::ptrdiff_t>((row + 1) * width)),
              want));
        }
        // Rows get their own scales: the large row's does not coarsen the others.
        CHECK(q.params.scale[3] > 5 * q.params.scale[1]);
      }
}

TEST_CASE("The quantized network's Gather reads the quantized table; the float one is unchanged") {
  const std::vector<float> t = table_values();
  const ax::model m = load(make_embedding_model(t));
  const ax::tensor ids = ids_tensor(6, 9);
  ax::network_options no;
  no.threads = 2;
  ax::onnx_network net(m, {ids}, no);
  const ax::embedding_table& et = net.embeddings().tables.at(0);
  const ax::quantized_embedding q = ax::quantize_embedding(
      et, *net.full_precision().constant_value(et.value), row_spec(4, true, aq::range_method::mse));
  const auto before =
      net.capture(net.quantizable_layers().at(0).id, 0, 6, aq::capture_mode::quantized);
  net.set_embedding(q);
  // The float model with the quantized table written into the file, run by the same executor.
  const ax::model mq = load(make_embedding_model(q.table));
  ax::onnx_network ref(mq, {ids});
  for (const std::size_t threads : {1, 2}) {
    ax::eval_options eo;
    eo.threads = threads;
    eo.batch = 4;
    eo.quantized = true;
    const auto got = net.forward({ids}, eo);
    eo.quantized = false;
    const auto want = ref.forward({ids}, eo);
    const auto fp = net.forward({ids}, eo);
    CHECK(same_bits(got.at(0).f, want.at(0).f));
    CHECK(same_bits(got.at(1).f, want.at(1).f));
    CHECK(!same_bits(got.at(1).f, fp.at(1).f));
    const ax::model mf = load(make_embedding_model(t));
    CHECK(same_bits(fp.at(1).f, ax::onnx_network(mf, {ids}).forward({ids}, eo).at(1).f));
  }
  // Captures made before set_embedding are recomputed: the layer now reads quantized rows.
  const auto after =
      net.capture(net.quantizable_layers().at(0).id, 0, 6, aq::capture_mode::quantized);
  CHECK(!same_bits(before.inputs, after.inputs));
  CHECK(same_bits(after.inputs, ref.forward({ids}).at(1).f));
}

TEST_CASE("Export: int8/int4 table with a per-row DequantizeLinear before the Gather, exact") {
  const std::vector<float> t = table_values();
  const onnx::ModelProto model = make_embedding_model(t);
  const ax::model m = load(model);
  ax::onnx_network net(m, {ids_tensor(4, 7)});
  const ax::embedding_table& et = net.embeddings().tables.at(0);
  for (const auto& [bits, symmetric] :
       {std::pair{8, false}, std::pair{4, true}, std::pair{3, false}}) {
    INFO("bits " << bits << " symmetric " << symmetric);
    const ax::quantized_embedding q =
        ax::quantize_embedding(et, *net.full_precision().constant_value(et.value),
                               row_spec(bits, symmetric, aq::range_method::min_max));
    const std::vector<ax::exported_embedding> es{ax::make_exported_embedding(q)};
    CHECK(es[0].bits == bits);
    onnx::ModelProto out;
    ax::export_qdq(model, {.embeddings = es}, {}, out);
    CHECK(opset(out) == (bits <= 4 ? 21 : 17));
    CHECK(!initializer(out, "emb"));  // the float table is gone
    const auto* qt = initializer(out, "emb_quantized");
    REQUIRE(qt);
    CHECK(qt->data_type() == (bits <= 4 ? 22 : 3));  // signed grids: int4 / int8
    const auto& dq = node(out, "emb_DequantizeLinear");
    CHECK(attr_i(dq, "axis", -1) == 0);
    CHECK(node(out, "tok").input(0) == dq.output(0));
    const value sv = decode(*initializer(out, "emb_scale"));
    CHECK(sv.shape == std::vector<std::int64_t>{vocab});
    evaluator ev(out);
    value ids;
    ids.type = 7;
    ids.shape = {3, tokens};
    ids.i = ids_tensor(3, 11).i;
    const auto r = ev.run({{"ids", ids}}, {"emb_dequantized", "e"});
    CHECK(same_bits(r.at("emb_dequantized").f, q.table));
    // The interpreter's lookup equals the simulated network's.
    net.set_embedding(q);
    ax::eval_options eo;
    eo.quantized = true;
    CHECK(same_bits(r.at("e").f, net.forward({ids_tensor(3, 11)}, eo).at(1).f));
    // (ONNX Runtime runs the exported text model in tests/e2e/text_cli.sh: its int64 ids do not
    // fit the float-only ORT cases of support/ort_cases.hpp.)
    // The encodings list the table with one scale and zero point per row.
    const auto j = nlohmann::json::parse(ax::encodings_json(model, {.embeddings = es}));
    CHECK(j["embeddings"][0]["node"] == "tok");
    CHECK(j["embeddings"][0]["table"] == "emb");
    CHECK(j["embeddings"][0]["bits"] == bits);
    const auto& e = j["tensors"]["emb"];
    CHECK(e["kind"] == "embedding");
    CHECK(e["axis"] == 0);
    CHECK(e["scale"].size() == vocab);
    CHECK(e["zero_point"][1] == q.params.zero_point[1]);
  }
  // Without embeddings the encodings have no "embeddings" key (the format as before).
  CHECK(!nlohmann::json::parse(ax::encodings_json(model, std::span<const ax::exported_layer>{}))
             .contains("embeddings"));
}

TEST_CASE("Embedding errors name the argument, node or table") {
  const std::vector<float> t = table_values();
  const onnx::ModelProto model = make_embedding_model(t);
  const ax::model m = load(model);
  ax::onnx_network net(m, {ids_tensor(4, 7)});
  const ax::embedding_table& et = net.embeddings().tables.at(0);
  const ax::tensor& values = *net.full_precision().constant_value(et.value);
  aq::quantizer_spec per_tensor = row_spec(4, true, aq::range_method::min_max);
  per_tensor.gran = aq::granularity::per_tensor();
  expect_error([&] { (void)ax::quantize_embedding(et, values, per_tensor); },
               aq::errc::invalid_argument, "quantize_embedding: spec.gran");
  expect_error(
      [&] { (void)ax::quantize_embedding(et, values, row_spec(17, true, aq::range_method::mse)); },
      aq::errc::invalid_argument, "quantize_embedding: spec.scheme.bits");
  ax::tensor wrong = values;
  wrong.shape = {width, vocab};
  expect_error(
      [&] { (void)ax::quantize_embedding(et, wrong, row_spec(4, true, aq::range_method::mse)); },
      aq::errc::shape_mismatch, "table 'emb' is [11, 6] float, got [6, 11]");
  ax::quantized_embedding q =
      ax::quantize_embedding(et, values, row_spec(4, true, aq::range_method::mse));
  ax::quantized_embedding other = q;
  other.node += 1;
  expect_error([&] { net.set_embedding(other); }, aq::errc::invalid_argument,
               "is not the Gather of table 'emb'");

  const auto export_error = [&](auto edit, aq::errc code, const std::string& text) {
    std::vector<ax::exported_embedding> es{ax::make_exported_embedding(q)};
    edit(es[0]);
    onnx::ModelProto out;
    out.set_producer_name("untouched");
    expect_error([&] { ax::export_qdq(model, {.embeddings = es}, {}, out); }, code, text);
    CHECK(out.producer_name() == "untouched");
  };
  export_error([](ax::exported_embedding& e) { e.node = "nope"; }, aq::errc::invalid_argument,
               "export_qdq: embedding: no node named 'nope'");
  export_error([](ax::exported_embedding& e) { e.node = "proj"; }, aq::errc::invalid_argument,
               "node 'proj' (MatMul): an embedding table is read by a Gather");
  export_error([](ax::exported_embedding& e) { e.table_initializer = "w"; },
               aq::errc::invalid_argument, "node 'tok' (Gather): does not read table 'w'");
  export_error(
      [](ax::exported_embedding& e) {
        e.node = "shared_1";
        e.table_initializer = "shared";
      },
      aq::errc::invalid_argument, "table 'shared': is read by other nodes too");
  export_error([](ax::exported_embedding& e) { e.bits = 9; }, aq::errc::invalid_argument,
               "table 'emb': bits must be in [2, 8] for ONNX export, got 9");
  export_error(
      [](ax::exported_embedding& e) { e.params.scale.pop_back(), e.params.zero_point.pop_back(); },
      aq::errc::shape_mismatch, "has 11 rows [11, 6], params must give one per row");
  export_error([](ax::exported_embedding& e) { e.table.pop_back(); }, aq::errc::shape_mismatch,
               "has 66 elements [11, 6], the embedding gives 65");
  export_error([](ax::exported_embedding& e) { e.table[7] += 1e-3f; }, aq::errc::invalid_argument,
               "weight[7] = ");
  std::vector<ax::exported_embedding> twice{ax::make_exported_embedding(q),
                                            ax::make_exported_embedding(q)};
  onnx::ModelProto out;
  expect_error([&] { ax::export_qdq(model, {.embeddings = twice}, {}, out); },
               aq::errc::invalid_argument, "appears in two exported embeddings");
}
