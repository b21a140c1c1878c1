// onnx_network's input quantizers on the operands of the products of two activations (Q K^T and
// softmax V, onnx/products.hpp): what they compute, the padding left out of their ranges, the
// order they are estimated in, determinism across thread counts, and bad options.
#include "network_test_util.hpp"
#include "onnx_test_util.hpp"

#include <adaquant/calibrate/driver.hpp>
#include <adaquant/kernels/fake_quant.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

using namespace onnx_test;
using adaquant::capture_mode;

namespace {

constexpr std::int64_t tokens = 4, heads = 2, dh = 3, width = heads * dh;

// One attention head pair: q = x Wq (a token-wise layer), split into heads; scores = q K^T + bias;
// context = softmax(scores) V; back to [N, T, 6] and y = context Wo (a token-wise layer).
// Inputs x [N, 4, 6], k and v [N, 2, 4, 3], bias [N, 1, 1, 4] (-1e9 on padded keys), and
// attention_mask [N, 4]; outputs y and scores.
builder attention() {
  builder b(13);
  b.input("x", {-1, tokens, width});
  b.input("k", {-1, heads, tokens, dh});
  b.input("v", {-1, heads, tokens, dh});
  b.input("bias", {-1, 1, 1, tokens});
  b.input("attention_mask", {-1, tokens}, P::INT64);
  b.init_f("wq", {width, width}, pseudo_random(width * width, 11, 0.6f));
  b.init_f("wo", {width, 2}, pseudo_random(width * 2, 12, 0.6f));
  b.init_i("heads_shape", {4}, {0, tokens, heads, dh});
  b.init_i("tokens_shape", {3}, {0, tokens, width});
  b.node("MatMul", {"x", "wq"}, {"q"}, "q");
  b.node("Reshape", {"q", "heads_shape"}, {"qr"}, "q_heads");
  attr_ints(b.node("Transpose", {"qr"}, {"qh"}, "q_transpose"), "perm", {0, 2, 1, 3});
  attr_ints(b.node("Transpose", {"k"}, {"kt"}, "k_transpose"), "perm", {0, 1, 3, 2});
  b.node("MatMul", {"qh", "kt"}, {"scores"}, "attn/MatMul");
  b.node("Add", {"scores", "bias"}, {"masked"}, "mask_add");
  attr_i(b.node("Softmax", {"masked"}, {"p"}, "softmax"), "axis", -1);
  b.node("MatMul", {"p", "v"}, {"context"}, "attn/MatMul_1");
  attr_ints(b.node("Transpose", {"context"}, {"ct"}, "c_transpose"), "perm", {0, 2, 1, 3});
  b.node("Reshape", {"ct", "tokens_shape"}, {"cf"}, "c_tokens");
  b.node("MatMul", {"cf", "wo"}, {"y"}, "out");
  b.output("y");
  b.output("scores");
  return b;
}

struct inputs {
  std::vector<aq::tensor> all;  // x, k, v, bias, attention_mask
};

// n samples; sample s has 4 - s % 3 tokens. `garbage` fills padded positions of x, k and v with
// large values (the mask bias keeps them out of every real token's result).
inputs make_inputs(std::int64_t n, bool garbage) {
  const auto x = pseudo_random(static_cast<std::size_t>(n * tokens * width), 21, 1.0f);
  auto k = pseudo_random(static_cast<std::size_t>(n * heads * tokens * dh), 22, 1.0f);
  auto v = pseudo_random(static_cast<std::size_t>(n * heads * tokens * dh), 23, 1.0f);
  std::vector<float> xs = x, bias(static_cast<std::size_t>(n * tokens));
  std::vector<std::int64_t> mask(static_cast<std::size_t>(n * tokens));
  for (std::int64_t s = 0; s < n; ++s)
    for (std::int64_t t = 0; t < tokens; ++t) {
      const bool real = t < tokens - s % 3;
      const auto st = static_cast<std::size_t>(s * tokens + t);
      mask[st] = real;
      bias[st] = real ? 0.0f : -1e9f;
      if (real || !garbage) continue;
      for (std::int64_t d = 0; d < width; ++d)
        xs[st * width + static_cast<std::size_t>(d)] = 50.0f + static_cast<float>(d);
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t d = 0; d < dh; ++d) {
          const auto at = static_cast<std::size_t>(((s * heads + h) * tokens + t) * dh + d);
          k[at] = -40.0f;
          v[at] = 70.0f;
        }
    }
  return {{aq::tensor({n, tokens, width}, xs), aq::tensor({n, heads, tokens, dh}, k),
           aq::tensor({n, heads, tokens, dh}, v), aq::tensor({n, 1, 1, tokens}, bias),
           aq::tensor(aq::dtype::int64, {n, tokens}, mask)}};
}

aq::network_options product_options(std::size_t threads, adaquant::range_method r,
                                    std::optional<std::string> token_mask = std::nullopt) {
  aq::network_options o;
  o.threads = threads;
  o.token_mask = std::move(token_mask);
  aq::activation_products_options p;
  p.spec = adaquant::quantizer_spec::activations(4);
  p.spec.rounding = adaquant::rounding_mode::onnx;
  p.spec.range = r;
  o.activation_products = p;
  return o;
}

aq::tensor fake_quant(const aq::tensor& x, const adaquant::quant_params& q) {
  aq::tensor out = x;
  aq::fake_quant_floats(x, out, q, adaquant::rounding_mode::onnx);
  return out;
}

// out [.., M, P] = a [.., M, K] b [.., K, P], in double.
std::vector<double> batched_matmul(const aq::tensor& a, const aq::tensor& b) {
  const auto r = a.rank();
  const auto m = static_cast<std::size_t>(a.shape[r - 2]),
             k = static_cast<std::size_t>(a.shape[r - 1]),
             p = static_cast<std::size_t>(b.shape[r - 1]);
  const std::size_t batches = a.size() / (m * k);
  std::vector<double> out(batches * m * p, 0.0);
  for (std::size_t z = 0; z < batches; ++z)
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < p; ++j)
        for (std::size_t l = 0; l < k; ++l)
          out[(z * m + i) * p + j] +=
              static_cast<double>(a.f[(z * m + i) * k + l]) * b.f[(z * k + l) * p + j];
  return out;
}

// Product operands as the quantized network computes them: {A, B}.
std::vector<aq::tensor> operands(const aq::onnx_network& net, const aq::activation_product& p,
                                 const std::vector<aq::tensor>& in) {
  const aq::graph& g = net.quantized();
  const aq::node& n = g.at(p.node);
  return g.run_from(g.start(in), p.node, {n.inputs[0], n.inputs[1]});
}

adaquant::quantized_layer quantize_layer(const adaquant::layer_desc& d, float act_scale) {
  adaquant::quantized_layer q;
  q.id = d.id;
  q.weight.assign(d.weight.begin(), d.weight.end());
  for (float& w : q.weight) w = std::nearbyint(w * 8.0f) / 8.0f;
  q.bias.assign(d.geometry.out_channels(), 0.0f);
  q.weight_params = {std::vector<float>(d.geometry.out_channels(), 0.125f),
                     std::vector<std::int32_t>(d.geometry.out_channels(), 0), -127, 127, 0};
  q.act_params = {act_scale, 8, 0, 15};
  q.act_rounding = adaquant::rounding_mode::onnx;
  return q;
}

}  // namespace

TEST_CASE("both operands of Q K^T and softmax V are fake-quantized with ranges over real tokens",
          "[onnx][network][products]") {
  const inputs in = make_inputs(7, false);
  aq::onnx_network net(attention().load("attention.onnx"), in.all,
                       product_options(1, adaquant::range_method::min_max));
  const auto layers = net.quantizable_layers();
  REQUIRE(layers.size() == 2);  // q and out; the two products are not layers
  const auto products = net.activation_products();
  REQUIRE(products.size() == 2);
  CHECK(products[0].name == "attn/MatMul");
  CHECK(products[1].name == "attn/MatMul_1");
  // Q [N, 2, 4, 3] by rows, K^T [N, 2, 3, 4] (a Transpose) by columns; softmax by rows, V by rows.
  CHECK(products[0].token_axis_a == 2);
  CHECK(products[0].token_axis_b == 3);
  CHECK(products[1].token_axis_a == 2);
  CHECK(products[1].token_axis_b == 2);
  CHECK_FALSE(products[0].estimated);
  // The const forward refuses a quantized pass before the ranges exist.
  aq::eval_options q;
  q.quantized = true;
  expect_error([&] { (void)std::as_const(net).forward(in.all, q); },
               adaquant::errc::invalid_argument, {"product \"attn/MatMul\"", "not estimated yet"});
  const auto out = net.forward(in.all, q);  // the non-const one estimates them
  for (const auto& p : net.activation_products()) {
    REQUIRE(p.estimated);
    const auto ops = operands(net, p, in.all);
    // min/max over the real tokens only, the 4-bit affine unsigned grid.
    for (int side = 0; side < 2; ++side) {
      const aq::tensor& x = ops[static_cast<std::size_t>(side)];
      const std::size_t axis = side ? p.token_axis_b : p.token_axis_a;
      std::size_t inner = 1;
      for (std::size_t d = axis + 1; d < x.rank(); ++d)
        inner *= static_cast<std::size_t>(x.shape[d]);
      const std::size_t per = x.size() / static_cast<std::size_t>(x.shape[0]);
      float lo = INFINITY, hi = -INFINITY;
      for (std::size_t e = 0; e < x.size(); ++e) {
        const std::size_t s = e / per, t = (e / inner) % tokens;
        if (!in.all[4].i[s * tokens + t]) continue;
        lo = std::min(lo, x.f[e]);
        hi = std::max(hi, x.f[e]);
      }
      const auto want = adaquant::params_from_range(adaquant::quantizer_spec::activations(4).scheme,
                                                    lo, hi, adaquant::zero_range::use_epsilon);
      const adaquant::quant_params& got = side ? p.b : p.a;
      CHECK(got.scale == want.scale);
      CHECK(got.zero_point == want.zero_point);
      CHECK(got.qmin == 0);
      CHECK(got.qmax == 15);
    }
    // The product is the product of the explicitly fake-quantized operands.
    if (p.node == products[0].node) {
      const auto want = batched_matmul(fake_quant(ops[0], p.a), fake_quant(ops[1], p.b));
      const aq::tensor& scores = out.at(1);
      REQUIRE(scores.size() == want.size());
      for (std::size_t e = 0; e < want.size(); ++e) CHECK(std::abs(scores.f[e] - want[e]) < 1e-5);
      // And not the float product (the quantizers do something).
      const auto fp = batched_matmul(ops[0], ops[1]);
      double moved = 0.0;
      for (std::size_t e = 0; e < fp.size(); ++e)
        moved = std::max(moved, std::abs(fp[e] - scores.f[e]));
      CHECK(moved > 1e-3);
    }
  }
  // Full precision stays float.
  const auto fp_out = net.forward(in.all);
  const auto ops = operands(net, net.activation_products()[0], in.all);
  const auto fp_scores = batched_matmul(ops[0], ops[1]);
  for (std::size_t e = 0; e < fp_scores.size(); ++e)
    CHECK(std::abs(fp_out.at(1).f[e] - fp_scores[e]) < 1e-5);
}

TEST_CASE("padding does not move the operand ranges; without the mask it does",
          "[onnx][network][products]") {
  for (const auto r : {adaquant::range_method::min_max, adaquant::range_method::percentile,
                       adaquant::range_method::mse}) {
    const inputs clean = make_inputs(9, false), dirty = make_inputs(9, true);
    aq::onnx_network a(attention().load(), clean.all, product_options(1, r));
    aq::onnx_network b(attention().load(), dirty.all, product_options(1, r));
    a.estimate_activation_products();
    b.estimate_activation_products();
    for (std::size_t i = 0; i < 2; ++i) {
      const auto &pa = a.activation_products()[i], &pb = b.activation_products()[i];
      CHECK(pa.a.scale == pb.a.scale);
      CHECK(pa.a.zero_point == pb.a.zero_point);
      CHECK(pa.b.scale == pb.b.scale);
      CHECK(pa.b.zero_point == pb.b.zero_point);
    }
  }
  const inputs clean = make_inputs(9, false), dirty = make_inputs(9, true);
  aq::onnx_network a(attention().load(), clean.all,
                     product_options(1, adaquant::range_method::min_max, ""));
  aq::onnx_network b(attention().load(), dirty.all,
                     product_options(1, adaquant::range_method::min_max, ""));
  CHECK(b.token_mask().empty());
  CHECK(b.activation_products()[0].token_axis_a == aq::graph::npos);
  a.estimate_activation_products();
  b.estimate_activation_products();
  CHECK(a.activation_products()[0].a.scale != b.activation_products()[0].a.scale);  // Q's garbage
  CHECK(a.activation_products()[1].b.scale != b.activation_products()[1].b.scale);  // V's garbage
}

TEST_CASE("operand ranges are estimated on the quantized network in execution order",
          "[onnx][network][products]") {
  const inputs in = make_inputs(6, false);
  aq::onnx_network net(attention().load(), in.all,
                       product_options(1, adaquant::range_method::min_max));
  const auto layers = net.quantizable_layers();
  const auto& first = layers[0];  // q, before both products
  const auto& last = layers[1];   // out, after them
  // Capturing the first layer needs no product.
  (void)net.capture(first.id, 0, 6, capture_mode::quantized);
  CHECK_FALSE(net.activation_products()[0].estimated);
  // The last layer's quantized inputs come through both quantized products.
  const auto before = net.capture(last.id, 0, 6, capture_mode::quantized);
  REQUIRE(net.activation_products()[1].estimated);
  const adaquant::quant_params q_range = net.activation_products()[0].a;
  CHECK(before.inputs != net.capture(last.id, 0, 6, capture_mode::full_precision).inputs);
  // Quantizing q drops both estimates; they come back from q's quantized output.
  net.set_quantized(quantize_layer(first, 0.25f));
  CHECK_FALSE(net.activation_products()[0].estimated);
  CHECK_FALSE(net.activation_products()[1].estimated);
  const auto after = net.capture(last.id, 0, 6, capture_mode::quantized);
  const auto& p = net.activation_products()[0];
  REQUIRE(p.estimated);
  CHECK(p.a.scale != q_range.scale);
  const auto ops = operands(net, p, in.all);
  CHECK(ops[0].f != operands(aq::onnx_network(attention().load(), in.all,
                                              product_options(1, adaquant::range_method::min_max)),
                             p, in.all)[0]
                        .f);
  CHECK(after.inputs != before.inputs);
  // Quantizing the last layer keeps them: nothing before them changed.
  net.set_quantized(quantize_layer(last, 0.5f));
  CHECK(net.activation_products()[0].estimated);
  // A fresh network given the same layers estimates the same ranges.
  aq::onnx_network fresh(attention().load(), in.all,
                         product_options(1, adaquant::range_method::min_max));
  fresh.set_quantized(quantize_layer(first, 0.25f));
  fresh.set_quantized(quantize_layer(last, 0.5f));
  fresh.estimate_activation_products();
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(fresh.activation_products()[i].a.scale == net.activation_products()[i].a.scale);
    CHECK(fresh.activation_products()[i].b.scale == net.activation_products()[i].b.scale);
  }
}

TEST_CASE("operand ranges and quantized outputs do not depend on the thread count",
          "[onnx][network][products]") {
  const inputs in = make_inputs(37, false);  // three chunks of 16, the last one short
  for (const auto r : {adaquant::range_method::min_max, adaquant::range_method::mse}) {
    std::vector<std::vector<float>> outs;
    std::vector<std::vector<float>> scales;
    for (std::size_t threads : {1u, 2u}) {
      aq::onnx_network net(attention().load(), in.all, product_options(threads, r));
      const auto layers = net.quantizable_layers();
      net.set_quantized(quantize_layer(layers[0], 0.25f));
      aq::eval_options q;
      q.quantized = true;
      q.threads = threads;
      q.batch = 5;
      outs.push_back(net.forward(in.all, q).at(0).f);
      std::vector<float> s;
      for (const auto& p : net.activation_products()) {
        s.push_back(p.a.scale);
        s.push_back(static_cast<float>(p.a.zero_point));
        s.push_back(p.b.scale);
        s.push_back(static_cast<float>(p.b.zero_point));
      }
      scales.push_back(s);
    }
    CHECK(outs[0] == outs[1]);
    CHECK(scales[0] == scales[1]);
  }
}

TEST_CASE("bad activation product options are refused with the reason",
          "[onnx][network][products][errors]") {
  const inputs in = make_inputs(3, false);
  using adaquant::errc;
  auto o = product_options(1, adaquant::range_method::min_max);
  o.activation_products->spec.scheme.bits = 1;
  expect_error([&] { aq::onnx_network(attention().load(), in.all, o); }, errc::invalid_argument,
               {"activation_products.spec", "bits"});
  o = product_options(1, adaquant::range_method::min_max);
  o.activation_products->spec.gran = adaquant::granularity::per_channel(0);
  expect_error([&] { aq::onnx_network(attention().load(), in.all, o); }, errc::invalid_argument,
               {"per tensor"});
  o = product_options(1, adaquant::range_method::min_max);
  o.activation_products->eight_bit = {"MatMul_1", "attn/MatMul_9"};
  expect_error([&] { aq::onnx_network(attention().load(), in.all, o); }, errc::invalid_argument,
               {"no product's node name ends with 'attn/MatMul_9'"});
  // A model whose only MatMul has a constant weight has no product.
  builder b(13);
  b.input("x", {-1, tokens, width});
  b.init_f("w", {width, 2}, pseudo_random(width * 2, 3));
  b.node("MatMul", {"x", "w"}, {"y"}, "proj");
  b.output("y");
  expect_error([&] { aq::onnx_network(b.load("proj.onnx"), {in.all[0]}, o); },
               errc::invalid_argument, {"proj.onnx", "no MatMul of two activations"});
  // eight_bit keeps the named products at 8 bits.
  o.activation_products->eight_bit = {"MatMul_1"};
  aq::onnx_network net(attention().load(), in.all, o);
  CHECK(net.activation_products()[0].bits == 4);
  CHECK(net.activation_products()[1].bits == 8);
  net.estimate_activation_products();
  CHECK(net.activation_products()[1].a.qmax == 255);
}
