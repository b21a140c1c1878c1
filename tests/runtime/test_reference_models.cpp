// The reference models built in code load from the committed weights and the C++ FP32 runtime
// reproduces the training script's logits of the first test images within 1e-4 (unfolded and
// BN-folded).
#include "support/code_built_models.hpp"
#include "test_helpers.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

using namespace adaquant::examples;

namespace {
float max_abs_diff(const tensor& a, const tensor& b) {
  REQUIRE(a.shape() == b.shape());
  float m = 0.0f;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

tensor reference_batch(const reference_sidecar& m, const image_dataset& test) {
  tensor x({m.reference_images.size(), 1, 28, 28});
  for (std::size_t i = 0; i < m.reference_images.size(); ++i) {
    const tensor one = make_batch(test, m.reference_images[i], 1, m.norm);
    std::copy(one.data(), one.data() + 784, x.data() + i * 784);
  }
  return x;
}
}  // namespace

TEST_CASE("reference models reproduce the script's logits within 1e-4", "[models]") {
  const image_dataset test = load_fashion_mnist(ADAQUANT_FASHION_MNIST_DIR, "test");
  REQUIRE(test.count == 10000);
  for (const std::string name : {"resnet_fm", "mobilenetv2_fm"}) {
    INFO(name);
    const reference_sidecar m = load_reference_sidecar(ADAQUANT_MODELS_DIR, name);
    const network net = code_built::load(ADAQUANT_MODELS_DIR, m);
    CHECK(net.parameter_count() == m.parameters);
    CHECK(net.macs_per_image(1, 28, 28) == m.macs_per_image);
    const tensor x = reference_batch(m, test);
    const tensor logits = net.forward(x);
    CHECK(max_abs_diff(logits, m.reference_logits) < 1e-4f);

    network folded = net;
    CHECK(fold_batch_norms(folded) == net.batch_norm_layers().size());
    CHECK(max_abs_diff(folded.forward(x), m.reference_logits) < 1e-4f);
  }
}

TEST_CASE("reference model loading rejects a corrupted weights file or a missing sidecar",
          "[models]") {
  const auto dir = test_helpers::temp_dir("models_corrupt");
  std::filesystem::copy_file(std::filesystem::path(ADAQUANT_MODELS_DIR) / "resnet_fm.json",
                             dir / "resnet_fm.json",
                             std::filesystem::copy_options::overwrite_existing);
  auto bytes =
      read_binary_file(std::filesystem::path(ADAQUANT_MODELS_DIR) / "resnet_fm.safetensors");
  bytes.resize(bytes.size() - 100);  // truncated data section
  {
    std::ofstream f(dir / "resnet_fm.safetensors", std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  }
  CHECK_THROWS_AS(code_built::load(dir, load_reference_sidecar(dir, "resnet_fm")), adaquant::error);
  CHECK_THROWS_AS(load_reference_sidecar(dir, "no_such_model"), adaquant::error);
  std::filesystem::remove_all(dir);
}
