// Static tests of QuantizableNetwork (calibrate/network.hpp) and BlockNetwork
// (calibrate/block_network.hpp), positive and negative.
#include <adaquant/calibrate/driver.hpp>

#include <catch2/catch.hpp>

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
  std::vector<float> capture(std::size_t, std::size_t, std::size_t, aq::capture_mode) {
    return {};
  }
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
}  // namespace

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
  } net;
  aq::calibration_options co;
  co.reconstruction = aq::reconstruction_unit::block;
  CHECK_THROWS_WITH(aq::adaquant_calibrate(net, aq::layer_quantizers{}, co),
                    Catch::Contains("needs a network with blocks"));
}

TEST_CASE("a network with no calibration samples is refused at run time, not at compile time") {
  minimal net;
  CHECK_THROWS_WITH(aq::adaquant_calibrate(net, aq::layer_quantizers{}, {}),
                    Catch::Contains("calibration set is empty"));
}
