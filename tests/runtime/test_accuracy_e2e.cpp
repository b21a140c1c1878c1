// End to end: the C++ FP32 runtime classifies the 10k Fashion-MNIST test images exactly as the
// training script did (same number of correct images), for any thread count.
#include <adaquant_runtime/evaluate.hpp>
#include <adaquant_runtime/models.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <iostream>

using namespace adaquant::examples;

namespace {
eval_options options(std::size_t batch, std::size_t threads, std::size_t limit) {
  eval_options o;
  o.batch = batch;
  o.threads = threads;
  o.limit = limit;
  return o;
}
}  // namespace

TEST_CASE("FP32 runtime reproduces the reference models' test accuracy exactly", "[e2e]") {
  const image_dataset test = load_fashion_mnist(ADAQUANT_FASHION_MNIST_DIR, "test");
  for (const std::string name : {"resnet_fm", "mobilenetv2_fm"}) {
    INFO(name);
    const reference_model m = load_reference_model(ADAQUANT_MODELS_DIR, name);
    const auto t0 = std::chrono::steady_clock::now();
    const eval_result r = evaluate(m.net, test, m.norm, options(100, 2, 0));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << name << ": " << r.correct << "/" << r.images << " correct, mean CE "
              << r.mean_cross_entropy << " (script: " << m.test_correct << ", "
              << m.test_mean_cross_entropy << "), " << s << " s\n";
    CHECK(r.images == m.test_images);
    CHECK(r.correct == m.test_correct);
    CHECK(r.mean_cross_entropy == Approx(m.test_mean_cross_entropy).margin(1e-4));
    // The misclassified images are the same ones.
    std::vector<std::size_t> wrong;
    for (std::size_t i = 0; i < r.images; ++i)
      if (r.predictions[i] != test.labels[i]) wrong.push_back(i);
    CHECK(wrong == m.sidecar.at("test").at("misclassified").get<std::vector<std::size_t>>());

    // One thread, another batch size: identical predictions.
    const eval_result r1 = evaluate(m.net, test, m.norm, options(64, 1, 2000));
    CHECK(std::equal(r1.predictions.begin(), r1.predictions.end(), r.predictions.begin()));
  }
}
