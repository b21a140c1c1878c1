// Static tests of QuantizableNetwork and LossNetwork (calibrate/network.hpp) and BlockNetwork
// (calibrate/block_network.hpp), positive and negative.
#include <adaquant/calibrate/driver.hpp>

#include <catch2/catch.hpp>

#include <string>

namespace aq = adaquant;

namespace {
struct minimal {  // the four members, nothing else
  std::size_t calibration_size() const { return 0; }
  std::vector<aq::layer_desc> quantizable_layers() const { return {}; }
  aq::layer_io capture(std::size_t, std::size_t, std::size_t, aq::capture_mode) { return {}; }
  void set_quantized(const aq::quantized_layer&) {}
};
struct no_set_quantized {
  std::size_t calibration_size() const { return 0; }
  std::vector<aq::layer_desc> quantizable_layers() const { return {}; }
  aq::layer_io capture(std::size_t, std::size_t, std::size_t, aq::capture_mode) { return {}; }
};
struct capture_returns_floats {
  std::size_t calibration_size() const { return 0; }
  std::vector<aq::layer_desc> quantizable_layers() const { return {}; }
  std::vector<float> capture(std::size_t, std::size_t, std::size_t, aq::capture_mode) { return {}; }
  void set_quantized(const aq::quantized_layer&) {}
};
struct size_not_const {  // the drivers read the size through a const reference
  std::size_t calibration_size() { return 0; }
  std::vector<aq::layer_desc> quantizable_layers() const { return {}; }
  aq::layer_io capture(std::size_t, std::size_t, std::size_t, aq::capture_mode) { return {}; }
  void set_quantized(const aq::quantized_layer&) {}
};
struct with_blocks : minimal {  // the three block members on top
  std::vector<aq::block_desc> blocks() const { return {}; }
  aq::block_desc block_of(std::size_t, std::size_t) const { return {}; }
  aq::block_io capture_block(const aq::block_desc&, std::size_t, std::size_t) { return {}; }
};
struct blocks_without_capture : minimal {
  std::vector<aq::block_desc> blocks() const { return {}; }
  aq::block_desc block_of(std::size_t, std::size_t) const { return {}; }
};
struct blocks_not_a_network {
  std::vector<aq::block_desc> blocks() const { return {}; }
  aq::block_desc block_of(std::size_t, std::size_t) const { return {}; }
  aq::block_io capture_block(const aq::block_desc&, std::size_t, std::size_t) { return {}; }
};
struct with_loss : minimal {
  double calibration_loss() { return 0.0; }
};
struct loss_is_text : minimal {
  std::string calibration_loss() { return {}; }
};
struct loss_takes_arguments : minimal {
  double calibration_loss(std::size_t samples) { return static_cast<double>(samples); }
};
}  // namespace

static_assert(aq::LossNetwork<with_loss> && !aq::LossNetwork<minimal>);
static_assert(!aq::LossNetwork<loss_is_text>);
static_assert(!aq::LossNetwork<loss_takes_arguments>);
static_assert(aq::BlockNetwork<with_blocks>);
static_assert(!aq::BlockNetwork<minimal>);
static_assert(!aq::BlockNetwork<blocks_without_capture>);
static_assert(!aq::BlockNetwork<blocks_not_a_network>);
static_assert(aq::QuantizableNetwork<minimal>);
static_assert(!aq::QuantizableNetwork<no_set_quantized>);
static_assert(!aq::QuantizableNetwork<capture_returns_floats>);
static_assert(!aq::QuantizableNetwork<size_not_const>);
static_assert(!aq::QuantizableNetwork<int>);

TEST_CASE("block reconstruction on a network without blocks is refused before any work") {
  struct one_layer : minimal {
    std::vector<float> w = std::vector<float>(6, 0.5f);
    std::size_t calibration_size() const { return 4; }
    std::vector<aq::layer_desc> quantizable_layers() const {
      aq::layer_desc d;
      d.geometry = aq::layer_geometry::of(aq::linear_geometry{3, 2});
      d.weight = w;
      return {d};
    }
    aq::layer_io capture(std::size_t, std::size_t, std::size_t m, aq::capture_mode) {
      aq::layer_io io;  // x = (0.1 j mod 0.7), y = W x with W all 0.5
      for (std::size_t j = 0; j < 3 * m; ++j) io.inputs.push_back(0.1f * static_cast<float>(j % 7));
      for (std::size_t r = 0; r < m; ++r)
        for (std::size_t o = 0; o < 2; ++o)
          io.outputs.push_back(0.5f *
                               (io.inputs[3 * r] + io.inputs[3 * r + 1] + io.inputs[3 * r + 2]));
      return io;
    }
  } net;
  aq::calibration_options co;
  co.reconstruction = aq::reconstruction_unit::block;
  CHECK_THROWS_WITH(aq::adaquant_calibrate(net, aq::layer_quantizers{}, co),
                    Catch::Contains("needs a network with blocks"));
  // By bits (the default), such a network is calibrated per layer, at any bits; selected blocks
  // are an error.
  co.reconstruction.reset();
  co.layer.iterations = 2;
  const aq::layer_quantizers w2{aq::quantizer_spec::weights(2), std::nullopt};
  CHECK(aq::adaquant_calibrate(net, w2, co).layers.size() == 1);
  co.blocks.max_layers = 2;
  CHECK_THROWS_WITH(aq::adaquant_calibrate(net, w2, co),
                    Catch::Contains("the network has no blocks"));
}

TEST_CASE("a network with no calibration samples is refused at run time, not at compile time") {
  minimal net;
  CHECK_THROWS_WITH(aq::adaquant_calibrate(net, aq::layer_quantizers{}, {}),
                    Catch::Contains("calibration set is empty"));
}
