// Static tests of QuantizableNetwork (calibrate/network.hpp), positive and negative.
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
}  // namespace

static_assert(aq::QuantizableNetwork<minimal>);
static_assert(!aq::QuantizableNetwork<no_set_quantized>);
static_assert(!aq::QuantizableNetwork<capture_returns_floats>);
static_assert(!aq::QuantizableNetwork<size_not_const>);
static_assert(!aq::QuantizableNetwork<int>);

TEST_CASE("a network with no calibration samples is refused at run time, not at compile time") {
  minimal net;
  CHECK_THROWS_WITH(aq::adaquant_calibrate(net, aq::layer_quantizers{}, {}),
                    Catch::Contains("calibration set is empty"));
}
