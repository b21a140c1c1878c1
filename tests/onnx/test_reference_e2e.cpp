// The reference models evaluated both ways on the 10k Fashion-MNIST test images: built in code
// with the example runtime (support/code_built_models.hpp, from the .safetensors weights) and
// loaded from models/<name>.onnx through the importer, as the demo and the CLIs load them. Both
// give the FP32 correct counts of the training script exactly (resnet_fm 9316, mobilenetv2_fm
// 9261); the models built in code also misclassify the script's images and match its mean
// cross-entropy. Either path gives the same outputs on 1 thread (first 2000 images). Prints the
// evaluation times and how many predictions the two paths disagree on.
#include "reference_util.hpp"

#include <adaquant_runtime/evaluate.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <span>

using namespace onnx_ref;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

TEST_CASE("ONNX files and the models built in code give the same FP32 correct counts",
          "[onnx][models][e2e]") {
  const ex::image_dataset test = ex::load_fashion_mnist(ADAQUANT_FASHION_MNIST_DIR, "test");
  REQUIRE(test.count == 10000);
  const auto y = labels(test);
  for (const auto& [name, expected] :
       {std::pair<std::string, std::size_t>{"resnet_fm", 9316}, {"mobilenetv2_fm", 9261}}) {
    INFO(name);
    const ex::reference_sidecar ref = ex::load_reference_sidecar(ADAQUANT_MODELS_DIR, name);
    CHECK(ref.test_correct == expected);

    // Built in code.
    const ex::network built = code_built::load(ADAQUANT_MODELS_DIR, ref);
    ex::eval_options ro;
    ro.threads = 2;
    auto t0 = std::chrono::steady_clock::now();
    const ex::eval_result r = ex::evaluate(built, test, ref.norm, ro);
    std::cout << name << " built in code: " << r.correct << " / " << r.images << " correct, "
              << seconds_since(t0) << " s on 2 threads\n";
    CHECK(r.correct == expected);
    CHECK(r.mean_cross_entropy == Approx(ref.test_mean_cross_entropy).margin(1e-4));
    std::vector<std::size_t> wrong;
    for (std::size_t i = 0; i < r.images; ++i)
      if (r.predictions[i] != test.labels[i]) wrong.push_back(i);
    CHECK(wrong == ref.json.at("test").at("misclassified").get<std::vector<std::size_t>>());

    // Through the importer.
    const aq::tensor x = test_images(test, ref, 0, test.count);
    const aq::onnx_network net(load_onnx(name), {x.items(0, 64)});
    aq::eval_options o;
    o.threads = 2;
    t0 = std::chrono::steady_clock::now();
    const aq::eval_result q = net.evaluate({x}, y, o);
    const double onnx_seconds = seconds_since(t0);
    REQUIRE(q.logits.size() == r.images * 10);
    std::size_t disagree = 0;
    for (std::size_t i = 0; i < q.samples; ++i) {
      const float* z = q.logits.f.data() + i * 10;
      disagree += static_cast<std::size_t>(std::max_element(z, z + 10) - z) != r.predictions[i];
    }
    std::cout << name << " through the importer: " << q.correct << " / " << q.samples
              << " correct, " << onnx_seconds << " s on 2 threads; " << disagree
              << " predictions differ from the model built in code\n";
    CHECK(q.correct == r.correct);
    CHECK(q.correct == expected);

    // One thread, the first 2000 images: the same outputs (the runtime also with another batch).
    ro.threads = 1;
    ro.batch = 64;
    ro.limit = 2000;
    const ex::eval_result r1 = ex::evaluate(built, test, ref.norm, ro);
    CHECK(std::equal(r1.predictions.begin(), r1.predictions.end(), r.predictions.begin()));
    o.threads = 1;
    const aq::eval_result q1 = net.evaluate({x.items(0, 2000)}, std::span(y).first(2000), o);
    CHECK(std::equal(q1.logits.f.begin(), q1.logits.f.end(), q.logits.f.begin()));
  }
}
