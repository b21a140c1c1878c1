// AdaQuant on layers fed with real data (Fashion-MNIST images), at 4, 3 and 2 bits, against
// round-to-nearest with MSE-optimal ranges. Weights are data-derived filters (zero-mean,
// unit-norm image patches), so both the inputs and the weight statistics are realistic.
//   conv:   1 -> 16 channels, 5x5, padding 2, on 28x28 normalised images, followed by ReLU
//   linear: 64 -> 32 on 8x8 image patches
// Label "slow": a few seconds in Release.

#include <adaquant/calibrate/adaquant.hpp>

#include <zlib.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace adaquant;

namespace {

// The first `count` images of an IDX3 .gz file, as floats normalised like torchvision's
// Fashion-MNIST recipe: (x / 255 - 0.286) / 0.353.
std::vector<float> read_images(const char* path, std::size_t count) {
  gzFile f = gzopen(path, "rb");
  REQUIRE(f != nullptr);
  unsigned char header[16];
  REQUIRE(gzread(f, header, 16) == 16);
  const auto be32 = [&](int o) {
    return (std::uint32_t{header[o]} << 24) | (std::uint32_t{header[o + 1]} << 16) |
           (std::uint32_t{header[o + 2]} << 8) | std::uint32_t{header[o + 3]};
  };
  REQUIRE(be32(0) == 0x803);
  REQUIRE(be32(8) == 28);
  REQUIRE(be32(12) == 28);
  std::vector<unsigned char> raw(count * 784);
  REQUIRE(gzread(f, raw.data(), static_cast<unsigned>(raw.size())) == static_cast<int>(raw.size()));
  gzclose(f);
  std::vector<float> out(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i)
    out[i] = (static_cast<float>(raw[i]) / 255.0f - 0.286f) / 0.353f;
  return out;
}

// A k x k patch at (y, x) of image n, zero-mean and unit-norm (a data-derived filter).
std::vector<float> patch(const std::vector<float>& img, std::size_t n, std::size_t y, std::size_t x,
                         std::size_t k, bool normalise) {
  std::vector<float> p(k * k);
  double mean = 0.0;
  for (std::size_t i = 0; i < k; ++i)
    for (std::size_t j = 0; j < k; ++j) mean += p[i * k + j] = img[n * 784 + (y + i) * 28 + x + j];
  if (!normalise) return p;
  mean /= static_cast<double>(k * k);
  double norm = 0.0;
  for (float& v : p) {
    v -= static_cast<float>(mean);
    norm += static_cast<double>(v) * v;
  }
  for (float& v : p) v /= static_cast<float>(std::sqrt(norm) + 1e-3);
  return p;
}

layer_result run(const layer_geometry& g, const std::vector<float>& w, const std::vector<float>& b,
                 const std::vector<float>& x, const std::vector<float>& y, output_activation act,
                 int bits, const char* name,
                 std::optional<weight_rounding> rounding = weight_rounding::learned_step) {
  layer_quantizers q{quantizer_spec::weights(bits), quantizer_spec::activations(bits)};
  q.activations->scheme.is_signed = true;  // normalised images and patches are signed
  adaquant_options o;
  o.iterations = 500;
  o.seed = 1;
  o.rounding = rounding;  // nullopt: default_rounding (AdaRound below 4 weight bits)
  layer_result r = adaquant_layer(g, w, b, x, y, act, q, o);
  WARN(name << " W" << bits << "A" << bits << (rounding ? "" : " default") << ": "
            << to_string(r.report) << " | held-out x"
            << r.report.heldout_before / r.report.heldout_after);
  return r;
}

}  // namespace

TEST_CASE("AdaQuant on real-data layers beats round-to-nearest at 4, 3 and 2 bits",
          "[adaquant][real]") {
  const std::size_t N = 256;
  const std::vector<float> img = read_images(ADAQUANT_FASHION_MNIST, N + 64);
  std::mt19937 gen(7);
  std::uniform_int_distribution<std::size_t> pos(0, 20), pick(N, N + 63);

  // Conv 1 -> 16, 5x5, padding 2, ReLU.
  conv2d_geometry c;
  c.in_channels = 1;
  c.out_channels = 16;
  c.in_h = c.in_w = 28;
  c.kernel_h = c.kernel_w = 5;
  c.pad_h = c.pad_w = 2;
  const layer_geometry cg = layer_geometry::of(c);
  std::vector<float> cw, cb(16, 0.05f);
  for (std::size_t o = 0; o < 16; ++o) {
    const auto p = patch(img, pick(gen), pos(gen) + 2, pos(gen) + 2, 5, true);
    cw.insert(cw.end(), p.begin(), p.end());
  }
  const std::vector<float> cx(img.begin(), img.begin() + static_cast<std::ptrdiff_t>(N * 784));
  std::vector<float> cy(N * 16 * 784);
  conv2d_forward(c, cx, cw, cb, cy);

  // Linear 64 -> 32 on 8x8 patches.
  const layer_geometry lg = layer_geometry::of(linear_geometry{64, 32});
  std::vector<float> lw, lb(32, 0.0f), lx;
  for (std::size_t o = 0; o < 32; ++o) {
    const auto p = patch(img, pick(gen), pos(gen), pos(gen), 8, true);
    lw.insert(lw.end(), p.begin(), p.end());
  }
  for (std::size_t n = 0; n < 4 * N; ++n) {
    const auto p = patch(img, n % N, pos(gen), pos(gen), 8, false);
    lx.insert(lx.end(), p.begin(), p.end());
  }
  std::vector<float> ly(4 * N * 32);
  linear_forward(lg.linear, lx, lw, lb, ly);

  for (int bits : {4, 3, 2}) {
    const layer_result rc =
        run(cg, cw, cb, cx, cy, output_activation::relu, bits, "conv 1->16 5x5");
    const layer_result rl = run(lg, lw, lb, lx, ly, output_activation::none, bits, "linear 64->32");
    for (const layer_result* r : {&rc, &rl}) {
      CHECK(std::isfinite(r->report.mse_after));
      CHECK(r->report.heldout_after < r->report.heldout_before);
      if (bits == 4) CHECK(r->report.heldout_after < 0.6 * r->report.heldout_before);
    }
    if (bits == 4) continue;
    // The default below 4 weight bits (AdaRound) improves on real data too.
    for (const layer_result& r :
         {run(cg, cw, cb, cx, cy, output_activation::relu, bits, "conv 1->16 5x5", std::nullopt),
          run(lg, lw, lb, lx, ly, output_activation::none, bits, "linear 64->32", std::nullopt)}) {
      CHECK(std::isfinite(r.report.mse_after));
      CHECK(r.report.heldout_after < r.report.heldout_before);
    }
  }
}
