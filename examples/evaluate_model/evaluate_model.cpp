// Evaluates a reference model's FP32 accuracy on the Fashion-MNIST test set.
//   evaluate_model [resnet_fm|mobilenetv2_fm] [--fold] [--threads N] [--models DIR] [--data DIR]
#include <adaquant_runtime/evaluate.hpp>
#include <adaquant_runtime/models.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace adaquant::examples;

int main(int argc, char** argv) try {
  std::string name = "resnet_fm", models = ADAQUANT_MODELS_DIR, data = ADAQUANT_FASHION_MNIST_DIR;
  bool fold = false;
  std::size_t threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--fold")
      fold = true;
    else if (a == "--threads" && i + 1 < argc)
      threads = std::strtoul(argv[++i], nullptr, 10);
    else if (a == "--models" && i + 1 < argc)
      models = argv[++i];
    else if (a == "--data" && i + 1 < argc)
      data = argv[++i];
    else if (!a.empty() && a[0] != '-')
      name = a;
    else {
      std::fprintf(stderr,
                   "usage: %s [resnet_fm|mobilenetv2_fm] [--fold] [--threads N] "
                   "[--models DIR] [--data DIR]\n",
                   argv[0]);
      return 2;
    }
  }
  reference_model m = load_reference_model(models, name);
  if (fold) std::printf("folded %zu batch norms\n", fold_batch_norms(m.net));
  const image_dataset test = load_fashion_mnist(data, "test");
  std::printf("%s: %zu parameters, %zu MACs/image, %zu quantizable layers\n", m.name.c_str(),
              m.net.parameter_count(), m.net.macs_per_image(1, 28, 28),
              m.net.quantizable_layers().size());
  const auto t0 = std::chrono::steady_clock::now();
  const eval_result r =
      evaluate(m.net, test, m.norm, {.threads = threads, .progress = stderr_progress(name)});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("top-1 %.2f%% (%zu/%zu), mean cross-entropy %.4f, %.2f s\n", 100.0 * r.accuracy,
              r.correct, r.images, r.mean_cross_entropy, s);
  std::printf("training script: %zu/%zu correct, mean cross-entropy %.4f\n", m.test_correct,
              m.test_images, m.test_mean_cross_entropy);
  return r.correct == m.test_correct ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
