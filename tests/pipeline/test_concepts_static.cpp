// Static tests of PipelineNetwork (pipeline/network.hpp), positive and negative, with the
// LossNetwork member bit allocation needs (its own static tests: tests/calibrate).
#include <adaquant/pipeline/light.hpp>

#include <catch2/catch.hpp>

#include "toy_network.hpp"

namespace aq = adaquant;

namespace {
struct calibration_only {  // QuantizableNetwork, no folded_batch_norm
  std::size_t calibration_size() const { return 0; }
  std::vector<aq::layer_desc> quantizable_layers() const { return {}; }
  aq::layer_io capture(std::size_t, std::size_t, std::size_t, aq::capture_mode) { return {}; }
  void set_quantized(const aq::quantized_layer&) {}
};
struct with_bn : calibration_only {
  const aq::batch_norm_params* folded_batch_norm(std::size_t) const { return nullptr; }
};
struct with_loss : with_bn {
  double calibration_loss() { return 0.0; }
};
}  // namespace

static_assert(!aq::PipelineNetwork<calibration_only>);
static_assert(aq::PipelineNetwork<with_bn>);
static_assert(!aq::LossNetwork<with_bn>);
static_assert(aq::PipelineNetwork<with_loss> && aq::LossNetwork<with_loss>);
static_assert(aq::PipelineNetwork<toy::network> && aq::LossNetwork<toy::network>);

TEST_CASE("the loss member is optional: pipelines without bit allocation run without it") {
  toy::network net(50);
  struct plain : with_bn {
    toy::network* n = nullptr;
    std::size_t calibration_size() const { return n->calibration_size(); }
    std::vector<aq::layer_desc> quantizable_layers() const { return n->quantizable_layers(); }
    aq::layer_io capture(std::size_t id, std::size_t f, std::size_t c, aq::capture_mode m) {
      return n->capture(id, f, c, m);
    }
    void set_quantized(const aq::quantized_layer& q) { n->set_quantized(q); }
  } p;
  p.n = &net;
  static_assert(aq::PipelineNetwork<decltype(p)> && !aq::LossNetwork<decltype(p)>);
  const aq::pipeline_report r = aq::light_pipeline(p, aq::light_config::naive(8, 8));
  CHECK(r.weight_bits == std::vector<int>{8, 8, 8});
  CHECK(net.set_calls == 3);
}
