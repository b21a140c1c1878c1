// fashion_mnist_npy: writes Fashion-MNIST as NumPy files for tools that read .npy (the CLI, ONNX
// Runtime via tools/ort/run.js):
//   OUT/calib.npy        [count, 1, 28, 28] float32: the PTQ demo's calibration images (same
//                        selection: calibration_images(train, norm, count, seed))
//   OUT/test.npy         [10000, 1, 28, 28] float32: every test image
//   OUT/test_labels.npy  [10000] int64
// Images are normalised as the reference models expect, ((pixel / 255) - mean) / std in float32,
// with mean and std from the model's sidecar. The files are byte-for-byte reproducible.
//
//   fashion_mnist_npy OUT [--calib 1000] [--seed 0] [--model resnet_fm] [--models DIR] [--data DIR]
#include <adaquant_runtime/idx.hpp>
#include <adaquant_runtime/npy.hpp>
#include <adaquant_runtime/sidecar.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace adaquant::examples;

namespace {
std::size_t parse_count(const char* flag, const std::string& v) {
  std::size_t used = 0;
  unsigned long long x = 0;
  try {
    x = std::stoull(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (v.empty() || used != v.size() || v[0] == '-')
    adaquant::detail::fail(adaquant::errc::invalid_argument,
                           std::string("fashion_mnist_npy: ") + flag,
                           "not a non-negative integer: '" + v + "'");
  return static_cast<std::size_t>(x);
}
}  // namespace

int main(int argc, char** argv) try {
  std::string out, model = "resnet_fm", models = ADAQUANT_MODELS_DIR,
                   data = ADAQUANT_FASHION_MNIST_DIR;
  std::size_t calib = 1000;
  std::uint64_t seed = 0;
  bool usage = false;
  for (int i = 1; i < argc && !usage; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--calib" && has_value)
      calib = parse_count("--calib", argv[++i]);
    else if (a == "--seed" && has_value)
      seed = parse_count("--seed", argv[++i]);
    else if (a == "--model" && has_value)
      model = argv[++i];
    else if (a == "--models" && has_value)
      models = argv[++i];
    else if (a == "--data" && has_value)
      data = argv[++i];
    else if (out.empty() && !a.empty() && a[0] != '-')
      out = a;
    else
      usage = true;
  }
  if (usage || out.empty()) {
    std::fprintf(stderr,
                 "usage: %s OUT [--calib 1000] [--seed 0] [--model resnet_fm] [--models DIR] "
                 "[--data DIR]\n",
                 argv[0]);
    return 2;
  }
  const normalisation norm = load_reference_sidecar(models, model).norm;
  const image_dataset train = load_fashion_mnist(data, "train");
  const image_dataset test = load_fashion_mnist(data, "test");
  std::filesystem::create_directories(out);
  const std::filesystem::path dir(out);

  write_npy(dir / "calib.npy", calibration_images(train, norm, calib, seed));
  write_npy(dir / "test.npy", make_batch(test, 0, test.count, norm));
  const std::vector<std::int64_t> labels(test.labels.begin(), test.labels.end());
  const std::size_t label_shape[] = {labels.size()};
  write_npy<std::int64_t>(dir / "test_labels.npy", label_shape, labels);
  std::printf(
      "%s: calib.npy [%zu, 1, %zu, %zu] (seed %llu), test.npy [%zu, 1, %zu, %zu], "
      "test_labels.npy [%zu]; mean %.4f std %.4f\n",
      out.c_str(), calib, train.rows, train.cols, static_cast<unsigned long long>(seed), test.count,
      test.rows, test.cols, labels.size(), static_cast<double>(norm.mean),
      static_cast<double>(norm.std));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
