// Kernels against naive loops, batch/thread invariance, BN folding and the quantization hooks.
#include <adaquant_runtime/evaluate.hpp>
#include <adaquant_runtime/network.hpp>
#include <adaquant_runtime/resumable_forward.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <random>

using namespace adaquant::examples;

namespace {
tensor random_tensor(std::vector<std::size_t> shape, std::mt19937& rng, float scale = 1.0f) {
  tensor t(std::move(shape));
  std::normal_distribution<float> nd(0.0f, scale);
  for (float& v : t.span()) v = nd(rng);
  return t;
}

tensor naive_conv(const tensor& x, const tensor& w, const std::vector<float>& b,
                  const conv_geometry& g) {
  const std::size_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const std::size_t o = w.dim(0), cg = w.dim(1), kh = w.dim(2), kw = w.dim(3);
  const std::size_t ho = (h + 2 * g.pad - kh) / g.stride + 1,
                    wo = (wd + 2 * g.pad - kw) / g.stride + 1;
  const std::size_t og = o / g.groups;
  tensor y({n, o, ho, wo});
  for (std::size_t ni = 0; ni < n; ++ni)
    for (std::size_t oi = 0; oi < o; ++oi)
      for (std::size_t i = 0; i < ho; ++i)
        for (std::size_t j = 0; j < wo; ++j) {
          double s = b.empty() ? 0.0 : b[oi];
          const std::size_t gi = oi / og;
          for (std::size_t ci = 0; ci < cg; ++ci)
            for (std::size_t a = 0; a < kh; ++a)
              for (std::size_t q = 0; q < kw; ++q) {
                const auto ih = static_cast<std::ptrdiff_t>(i * g.stride + a) -
                                static_cast<std::ptrdiff_t>(g.pad);
                const auto iw = static_cast<std::ptrdiff_t>(j * g.stride + q) -
                                static_cast<std::ptrdiff_t>(g.pad);
                if (ih < 0 || iw < 0 || ih >= static_cast<std::ptrdiff_t>(h) ||
                    iw >= static_cast<std::ptrdiff_t>(wd))
                  continue;
                s += static_cast<double>(w[((oi * cg + ci) * kh + a) * kw + q]) *
                     x[((ni * c + gi * cg + ci) * h + static_cast<std::size_t>(ih)) * wd +
                       static_cast<std::size_t>(iw)];
              }
          y[((ni * o + oi) * ho + i) * wo + j] = static_cast<float>(s);
        }
  return y;
}

void require_close(const tensor& a, const tensor& b, float tol) {
  REQUIRE(a.shape() == b.shape());
  for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == Approx(b[i]).margin(tol));
}

// stem conv-BN-ReLU -> depthwise conv-BN-ReLU6 -> 1x1 conv-BN + residual -> pool -> linear
network small_net(std::mt19937& rng) {
  network net;
  auto bn = [&](std::size_t c) {
    batch_norm_params p;
    std::uniform_real_distribution<float> u(0.5f, 1.5f), m(-0.3f, 0.3f);
    for (std::size_t i = 0; i < c; ++i) {
      p.gamma.push_back(u(rng));
      p.beta.push_back(m(rng));
      p.running_mean.push_back(m(rng));
      p.running_var.push_back(u(rng));
    }
    return p;
  };
  std::size_t x = net.add_conv2d("stem", 0, random_tensor({8, 1, 3, 3}, rng, 0.5f), {}, {1, 1, 1});
  x = net.add_relu("stem_relu", net.add_batch_norm("stem_bn", x, bn(8)));
  std::size_t y = net.add_conv2d("dw", x, random_tensor({8, 1, 3, 3}, rng, 0.5f), {}, {2, 1, 8});
  y = net.add_relu6("dw_relu", net.add_batch_norm("dw_bn", y, bn(8)));
  std::size_t z = net.add_conv2d("pw", y, random_tensor({8, 8, 1, 1}, rng, 0.3f),
                                 std::vector<float>(8, 0.1f), {1, 0, 1});
  z = net.add_batch_norm("pw_bn", z, bn(8));
  z = net.add_add("add", y, z);
  z = net.add_global_avg_pool("pool", z);
  net.add_linear("fc", z, random_tensor({4, 8}, rng, 0.5f), {0.1f, -0.2f, 0.3f, 0.0f});
  return net;
}
}  // namespace

TEST_CASE("conv2d matches a naive loop for strides, padding, groups and depthwise", "[kernels]") {
  std::mt19937 rng(1);
  struct cfg {
    std::size_t c, o, k, stride, pad, groups, h, w;
  };
  for (const cfg& c :
       {cfg{3, 5, 3, 1, 1, 1, 7, 6}, cfg{4, 6, 3, 2, 1, 2, 9, 9}, cfg{6, 6, 3, 2, 1, 6, 8, 7},
        cfg{6, 6, 3, 1, 1, 6, 5, 5}, cfg{5, 7, 1, 1, 0, 1, 4, 4}, cfg{5, 7, 1, 2, 0, 1, 5, 5},
        cfg{2, 3, 5, 3, 2, 1, 11, 10}}) {
    const tensor x = random_tensor({2, c.c, c.h, c.w}, rng);
    const tensor w = random_tensor({c.o, c.c / c.groups, c.k, c.k}, rng);
    std::vector<float> b(c.o);
    for (auto& v : b) v = std::normal_distribution<float>()(rng);
    const conv_geometry g{c.stride, c.pad, c.groups};
    require_close(conv2d(x, w, b, g), naive_conv(x, w, b, g), 1e-4f);
    require_close(conv2d(x, w, {}, g), naive_conv(x, w, {}, g), 1e-4f);
  }
  CHECK_THROWS_AS(
      conv2d(random_tensor({1, 3, 4, 4}, rng), random_tensor({2, 2, 3, 3}, rng), {}, {}),
      adaquant::error);
}

TEST_CASE("linear, batch norm and cross-entropy match their definitions", "[kernels]") {
  std::mt19937 rng(2);
  const tensor x = random_tensor({3, 5}, rng), w = random_tensor({4, 5}, rng);
  const std::vector<float> b = {1, 2, 3, 4};
  const tensor y = linear(x, w, b);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t o = 0; o < 4; ++o) {
      double s = b[o];
      for (std::size_t k = 0; k < 5; ++k) s += double(x[i * 5 + k]) * w[o * 5 + k];
      CHECK(y[i * 4 + o] == Approx(s).margin(1e-5));
    }
  tensor t({1, 2, 1, 2}, std::vector<float>{1, 2, 3, 4});
  batch_norm_inplace(t, {{2, 1}, {0, 1}, {1, 3}, {4 - 1e-5f, 1 - 1e-5f}, 1e-5f});
  CHECK(t[0] == Approx(0.0f).margin(1e-6));
  CHECK(t[1] == Approx(1.0f));
  CHECK(t[2] == Approx(1.0f));
  CHECK(t[3] == Approx(2.0f));
  const tensor logits({2, 3}, std::vector<float>{0, 0, 0, 1000, 0, 0});
  const std::uint8_t labels[] = {1, 0};
  const auto ce = softmax_cross_entropy(logits, labels);
  CHECK(ce[0] == Approx(std::log(3.0)));
  CHECK(ce[1] == Approx(0.0).margin(1e-12));
}

TEST_CASE("forward is independent of batch composition", "[network]") {
  std::mt19937 rng(3);
  const network net = small_net(rng);
  const tensor x = random_tensor({5, 1, 12, 12}, rng);
  const tensor all = net.forward(x);
  REQUIRE(all.shape() == std::vector<std::size_t>{5, 4});
  for (std::size_t i = 0; i < 5; ++i) {
    tensor one({1, 1, 12, 12});
    std::copy(x.data() + i * 144, x.data() + (i + 1) * 144, one.data());
    const tensor y = net.forward(one);
    for (std::size_t k = 0; k < 4; ++k) CHECK(y[k] == all[i * 4 + k]);  // bit-exact
  }
  CHECK(net.quantizable_layers().size() == 4);
  CHECK(net.batch_norm_layers().size() == 3);
  CHECK(net.parameter_count() == 72 + 72 + 64 + 8 + 32 + 4 + 3 * 16);
  CHECK(net.macs_per_image(1, 12, 12) == 144 * 72 + 36 * 72 + 36 * 64 + 32);
}

TEST_CASE("tensor::items copies a range of the leading axis and rejects one outside it",
          "[network]") {
  std::mt19937 rng(2);
  const tensor x = random_tensor({4, 2, 3}, rng);
  const tensor mid = x.items(1, 3);
  CHECK(mid.shape() == std::vector<std::size_t>{2, 2, 3});
  CHECK(std::equal(mid.data(), mid.data() + mid.size(), x.data() + 6));
  CHECK(x.items(4, 4).shape() == std::vector<std::size_t>{0, 2, 3});
  CHECK_THROWS_AS(x.items(3, 5), adaquant::error);
  CHECK_THROWS_AS(x.items(3, 2), adaquant::error);
  CHECK_THROWS_AS(tensor().items(0, 0), adaquant::error);
}

TEST_CASE("a forward pass resumed from a saved state equals the full pass", "[network]") {
  std::mt19937 rng(21);
  network net = small_net(rng);
  const tensor x = random_tensor({3, 1, 12, 12}, rng);
  const std::size_t pw = net.index_of("pw"), last = net.size() - 1;
  // The state before "pw" keeps the residual branch's value (read by "add" after pw).
  forward_state before_pw;
  const tensor full = net.forward_from(net.start(x), last, pw, &before_pw);
  CHECK(before_pw.next == pw);
  CHECK(before_pw.live.count(net.at("add").inputs[0]) == 1);
  CHECK(net.forward_from(before_pw, last).values() == full.values());  // bit-exact
  // Changing pw (at or after the saved node) and resuming equals a full pass of the changed net.
  net.at("pw").bias.assign(8, 0.7f);
  CHECK(net.forward_from(before_pw, last).values() == net.forward(x).values());
  CHECK(net.forward_from(before_pw, pw).values() == net.forward_until(x, pw).values());

  resumable_forward pass(x);
  CHECK(pass.run(net, last, pw).values() == net.forward(x).values());
  CHECK(pass.kept().next == pw);
  net.at("fc").bias.assign(4, -1.0f);
  pass.invalidate_from(net.index_of("fc"));
  CHECK(pass.dirty() == net.index_of("fc"));
  CHECK(pass.run(net, last, pass.dirty()).values() == net.forward(x).values());
  // A change before the kept state forces a pass from the input; it is still exact.
  net.at("stem").bias.assign(8, 0.2f);
  pass.invalidate_from(net.index_of("stem"));
  CHECK(pass.run(net, last, last).values() == net.forward(x).values());

  CHECK_THROWS_AS(net.forward_from(net.start(x), last + 1), adaquant::error);
  CHECK_THROWS_AS(net.forward_from(before_pw, pw - 1), adaquant::error);
  forward_state missing = before_pw;
  missing.live.clear();
  CHECK_THROWS_WITH(net.forward_from(missing, last), Catch::Contains("not in the state"));
  forward_state unused;
  CHECK_THROWS_AS(net.forward_from(net.start(x), pw, last, &unused), adaquant::error);
}

TEST_CASE("fold_batch_norms keeps the function and turns BNs into identities", "[network]") {
  std::mt19937 rng(4);
  const network net = small_net(rng);
  network folded = net;
  CHECK(fold_batch_norms(folded) == 3);
  CHECK(folded.batch_norm_layers().empty());
  CHECK(folded.at("stem_bn").kind == op_kind::identity);
  CHECK(folded.at("stem").bias.size() == 8);
  const tensor x = random_tensor({3, 1, 12, 12}, rng);
  require_close(folded.forward(x), net.forward(x), 1e-4f);
}

TEST_CASE("hooks: input transforms, captures, BN observers, weight replacement", "[network]") {
  std::mt19937 rng(5);
  network net = small_net(rng);
  const tensor x = random_tensor({2, 1, 12, 12}, rng);
  const tensor ref = net.forward(x);

  // Captures see the layer's input and output; forward_until stops at the named node.
  std::size_t seen = 0;
  net.at("pw").capture = [&](const layer_io& io) {
    ++seen;
    CHECK(io.input.shape() == std::vector<std::size_t>{2, 8, 6, 6});
    CHECK(&io.input == &io.layer_input);
    CHECK(io.output.shape() == std::vector<std::size_t>{2, 8, 6, 6});
  };
  const tensor pw = net.forward_until(x, net.index_of("pw"));
  CHECK(seen == 1);
  CHECK(pw.shape() == std::vector<std::size_t>{2, 8, 6, 6});

  // An input transform changes what the layer computes, not what the capture calls input.
  net.at("pw").input_transform = [](tensor& t) {
    for (float& v : t.span()) v = std::round(v * 4.0f) / 4.0f;
  };
  net.at("pw").capture = [&](const layer_io& io) {
    CHECK(&io.input != &io.layer_input);
    CHECK(io.layer_input[3] * 4.0f == std::round(io.layer_input[3] * 4.0f));
  };
  const tensor q = net.forward(x);
  bool differs = false;
  for (std::size_t i = 0; i < q.size(); ++i) differs |= q[i] != ref[i];
  CHECK(differs);

  // BN observers receive each BN input; running statistics can be overwritten.
  std::size_t observed_channels = 0;
  net.at("dw_bn").bn_observer = [&](const tensor& in) { observed_channels = in.dim(1); };
  (void)net.forward(x);
  CHECK(observed_channels == 8);
  net.clear_hooks();
  require_close(net.forward(x), ref, 0.0f);

  // Replacing weights is shape-checked.
  tensor w = net.at("fc").weight;
  w[0] += 1.0f;
  net.set_weight("fc", w);
  CHECK(net.at("fc").weight[0] == w[0]);
  CHECK_THROWS_AS(net.set_weight("fc", tensor({3, 8})), adaquant::error);
  CHECK_THROWS_AS(net.set_bias("stem_bn", {1.0f}), adaquant::error);
  CHECK_THROWS_AS(net.index_of("nope"), adaquant::error);
}

TEST_CASE("evaluate gives identical results for any thread count and batch size", "[evaluate]") {
  std::mt19937 rng(6);
  const network net = small_net(rng);
  image_dataset d;
  d.count = 53;
  d.rows = d.cols = 12;
  for (std::size_t i = 0; i < d.count * 144; ++i)
    d.pixels.push_back(static_cast<std::uint8_t>(rng()));
  for (std::size_t i = 0; i < d.count; ++i)
    d.labels.push_back(static_cast<std::uint8_t>(rng() % 4));
  const normalisation norm{0.3f, 0.4f};
  eval_options o;
  o.threads = 1;
  o.batch = 53;
  const eval_result ref = evaluate(net, d, norm, o);
  CHECK(ref.images == 53);
  for (const std::size_t threads : {1, 2, 3}) {
    for (const bool progress : {false, true}) {
      eval_options p;
      p.threads = threads;
      p.batch = 7;
      std::size_t last = 0, calls = 0;
      if (progress)
        p.progress = [&](std::size_t done, std::size_t total) {
          CHECK(done >= last);
          CHECK(total == 53);
          last = done;
          ++calls;
        };
      const eval_result r = evaluate(net, d, norm, p);
      CHECK(r.correct == ref.correct);
      CHECK(r.predictions == ref.predictions);
      CHECK(r.mean_cross_entropy == ref.mean_cross_entropy);  // bit-exact
      if (progress) CHECK((last == 53 && calls > 0));
    }
  }
  eval_options bad;
  bad.batch = 0;
  CHECK_THROWS_AS(evaluate(net, d, norm, bad), adaquant::error);
}
