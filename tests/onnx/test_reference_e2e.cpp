// The ONNX path reproduces the reference models' FP32 correct counts on the 10k Fashion-MNIST test
// images exactly (resnet_fm 9316, mobilenetv2_fm 9261), identically on 1 and 2 threads; prints
// the evaluation time.
#include "reference_util.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <iostream>

using namespace onnx_ref;

TEST_CASE("ONNX reference models reproduce the FP32 correct counts", "[onnx][models][e2e]") {
  const ex::image_dataset test = ex::load_fashion_mnist(ADAQUANT_FASHION_MNIST_DIR, "test");
  REQUIRE(test.count == 10000);
  const auto y = labels(test);
  for (const std::string name : {"resnet_fm", "mobilenetv2_fm"}) {
    INFO(name);
    const ex::reference_model ref = ex::load_reference_model(ADAQUANT_MODELS_DIR, name);
    const aq::tensor x = test_images(test, ref, 0, test.count);
    const aq::onnx_network net(load_onnx(name), {x.items(0, 64)});
    aq::tensor first;
    for (const std::size_t threads : {1, 2}) {
      aq::eval_options o;
      o.threads = threads;
      const auto t0 = std::chrono::steady_clock::now();
      const aq::eval_result r = net.evaluate({x}, y, o);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cout << name << ": " << r.correct << " / " << r.samples << " correct, FP32 eval " << s
                << " s on " << threads << " thread(s)\n";
      CHECK(r.correct == ref.test_correct);
      CHECK(r.correct == (name == "resnet_fm" ? 9316u : 9261u));
      if (threads == 1) first = r.logits;
      else CHECK(r.logits.f == first.f);
    }
  }
}
