// Token-wise linear layers (linear_geometry::rows > 1) with padding marked in layer_io::row_mask:
// padding rows must change nothing. The toy network over M rows is compared, bit for bit, with
// the same network seen as S sequences of T rows whose padding rows hold garbage.

#include <adaquant/pipeline/advanced.hpp>
#include <adaquant/pipeline/light.hpp>

#include <catch2/catch.hpp>

#include "support/expect_error.hpp"
#include "toy_network.hpp"

namespace aq = adaquant;

namespace {
constexpr std::size_t tokens = 5;

// Valid tokens of sequence s: 1 .. tokens, varied.
std::size_t length_of(std::size_t s) { return 1 + (s * 3 + s / 4) % tokens; }
std::size_t total_rows(std::size_t sequences) {
  std::size_t m = 0;
  for (std::size_t s = 0; s < sequences; ++s) m += length_of(s);
  return m;
}

// `inner` (rows = 1, M samples) as `sequences` sequences of `tokens` rows: sequence s holds the
// next length_of(s) samples of inner, then padding rows of garbage (marked when `mask`).
struct padded_network {
  toy::network& inner;
  std::size_t sequences = 0;
  bool mask = true;
  bool short_mask = false;   // a row_mask one entry short (error test)
  bool all_padding = false;  // every row marked padding (error test)

  std::size_t first_row(std::size_t s) const { return total_rows(s); }

  std::size_t calibration_size() const { return sequences; }
  std::vector<aq::layer_desc> quantizable_layers() const {
    std::vector<aq::layer_desc> d = inner.quantizable_layers();
    for (aq::layer_desc& l : d) l.geometry.linear.rows = tokens;
    return d;
  }
  aq::layer_io capture(std::size_t id, std::size_t first, std::size_t count, aq::capture_mode m) {
    const aq::layer_geometry g = inner.quantizable_layers().at(id).geometry;
    const std::size_t in = g.linear.in_features, out = g.linear.out_features;
    const std::size_t r0 = first_row(first), r1 = first_row(first + count);
    const aq::layer_io rows = inner.capture(id, r0, r1 - r0, m);
    aq::layer_io io;
    io.inputs.resize(count * tokens * in);
    io.outputs.resize(count * tokens * out);
    io.row_mask.assign(count * tokens, 0);
    std::size_t r = 0;  // next valid row of `rows`
    for (std::size_t s = 0; s < count; ++s)
      for (std::size_t t = 0; t < tokens; ++t) {
        const std::size_t row = s * tokens + t;
        const bool valid = t < length_of(first + s);
        io.row_mask[row] = valid && !all_padding;
        for (std::size_t k = 0; k < in; ++k)
          io.inputs[row * in + k] =
              valid ? rows.inputs[r * in + k] : 40.0f + static_cast<float>((row + k) % 13);
        for (std::size_t k = 0; k < out; ++k)
          io.outputs[row * out + k] =
              valid ? rows.outputs[r * out + k] : -30.0f - static_cast<float>((row * k) % 7);
        r += valid;
      }
    if (!mask) io.row_mask.clear();
    if (short_mask) io.row_mask.pop_back();
    return io;
  }
  void set_quantized(const aq::quantized_layer& q) { inner.set_quantized(q); }
  const aq::batch_norm_params* folded_batch_norm(std::size_t id) const {
    return inner.folded_batch_norm(id);
  }
  double calibration_loss() { return inner.calibration_loss(); }
};
static_assert(aq::PipelineNetwork<padded_network> && aq::LossNetwork<padded_network>);

// W<w>A<a>, first and last layer at 8 bits (the default convention).
aq::quantization_spec bits(int w, int a) {
  aq::quantization_spec q;
  q.weights = aq::quantizer_spec::weights(w);
  q.activations = aq::quantizer_spec::activations(a);
  return q;
}
aq::light_config light(int w, int a) { return {bits(w, a)}; }
aq::advanced_config advanced(int w, int a) {
  aq::advanced_config c{bits(w, a)};
  c.adaquant->layer.iterations = 60;
  c.adaquant->layer.seed = 3;
  return c;
}

void check_identical(const toy::network& a, const toy::network& b) {
  REQUIRE(a.quantized().size() == b.quantized().size());
  for (const auto& [id, q] : a.quantized()) {
    const aq::quantized_layer& p = b.quantized().at(id);
    CHECK(q.weight == p.weight);
    CHECK(q.bias == p.bias);
    CHECK(q.weight_params.scale == p.weight_params.scale);
    CHECK(q.act_params == p.act_params);
  }
}
}  // namespace

TEST_CASE("padding rows change nothing: light and advanced on tokens equal the valid rows alone",
          "[tokens]") {
  const std::size_t sequences = 61, m = total_rows(sequences);
  for (const std::size_t threads : {std::size_t{1}, std::size_t{2}}) {
    // capture_batch 7: chunks cut sequences differently from the rows of the plain network.
    const aq::execution_context ctx{threads, 7, {}};
    {
      toy::network plain(m, 5), inner(m, 5);
      padded_network padded{inner, sequences};
      (void)aq::light_pipeline(plain, light(4, 4), ctx);
      (void)aq::light_pipeline(padded, light(4, 4), ctx);
      check_identical(plain, inner);
    }
    for (const auto order : {aq::calibration_order::sequential, aq::calibration_order::parallel}) {
      toy::network plain(m, 5), inner(m, 5);
      padded_network padded{inner, sequences};
      auto c = advanced(3, 4);
      c.adaquant->order = order;
      (void)aq::advanced_pipeline(plain, c, ctx);
      (void)aq::advanced_pipeline(padded, c, ctx);
      check_identical(plain, inner);
    }
  }
}

TEST_CASE("masked range estimation ignores padding; unmasked, the garbage moves the ranges",
          "[tokens]") {
  const std::size_t sequences = 40, m = total_rows(sequences);
  const aq::execution_context ctx{1, 16, {}};
  for (const char* method : {"min_max", "percentile", "mse"}) {
    INFO(method);
    auto c = light(8, 8);
    c.quant.activations->range = std::string(method) == "min_max" ? aq::range_method::min_max
                                 : std::string(method) == "percentile"
                                     ? aq::range_method::percentile
                                     : aq::range_method::mse;
    c.bn_tuning.reset();
    c.bias_correction = false;
    toy::network plain(m, 9), inner(m, 9), unmasked_inner(m, 9);
    padded_network padded{inner, sequences}, unmasked{unmasked_inner, sequences, false};
    (void)aq::light_pipeline(plain, c, ctx);
    (void)aq::light_pipeline(padded, c, ctx);
    (void)aq::light_pipeline(unmasked, c, ctx);
    check_identical(plain, inner);
    // The garbage (40 .. 52) lies far above every real input: without the mask it sets the range.
    CHECK(unmasked_inner.quantized().at(1).act_params.scale >
          2.0f * plain.quantized().at(1).act_params.scale);
  }
}

TEST_CASE("row masks that do not fit, or mark everything as padding, are errors", "[tokens]") {
  const std::size_t sequences = 12, m = total_rows(sequences);
  const aq::execution_context ctx{1, 16, {}};
  {
    toy::network inner(m);
    padded_network bad{inner, sequences};
    bad.short_mask = true;
    adaquant_test::expect_error(
        [&] { (void)aq::light_pipeline(bad, light(8, 8), ctx); }, aq::errc::shape_mismatch,
        "capture(layer 0).row_mask: has 59 entries for 12 samples of 5 rows");
  }
  {
    toy::network inner(m);
    padded_network bad{inner, sequences};
    bad.all_padding = true;
    adaquant_test::expect_error([&] { (void)aq::light_pipeline(bad, light(8, 8), ctx); },
                                aq::errc::empty_input,
                                "row_mask marks every row of the calibration samples as padding");
  }
}
