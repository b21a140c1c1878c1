// AdaQuant on a single Eigen linear layer and a conv layer: cache calibration inputs and FP32
// outputs, optimise the layer at W4A4, print the output MSE before (round-to-nearest with
// MSE-optimal ranges) and after.

#include <adaquant/calibrate/adaquant.hpp>

#include <Eigen/Core>

#include <cstdio>
#include <random>

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace {

// Smooth, correlated inputs (like images or features), not white noise.
RowMatrix correlated_inputs(Eigen::Index n, Eigen::Index d, std::mt19937& gen) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  RowMatrix x(n, d);
  for (Eigen::Index i = 0; i < n; ++i) {
    float walk = g(gen);
    for (Eigen::Index j = 0; j < d; ++j) {
      walk = 0.8f * walk + 0.6f * g(gen);
      x(i, j) = std::max(0.0f, walk + 0.5f);  // ReLU'd, as after a previous layer
    }
  }
  return x;
}

void print(const char* name, const adaquant::layer_result& r) {
  const adaquant::layer_report& rep = r.report;
  std::printf("%-28s MSE %.5g -> %.5g (x%.2f), held-out %.5g -> %.5g, %zu iterations, %.2f s\n",
              name, rep.mse_before, rep.mse_after, rep.improvement(), rep.heldout_before,
              rep.heldout_after, rep.iterations, rep.seconds);
}

}  // namespace

int main() {
  std::mt19937 gen(1);
  std::normal_distribution<float> g(0.0f, 1.0f);
  // What the layers are quantized to: W4 per output channel symmetric, A4 per tensor affine,
  // starting from MSE-optimal ranges. How AdaQuant optimises: 500 Adam steps, default rates.
  const adaquant::layer_quantizers w4a4{adaquant::quantizer_spec::weights(4),
                                        adaquant::quantizer_spec::activations(4)};
  adaquant::adaquant_options opt;
  opt.iterations = 500;

  // Linear 128 -> 64: Y = X W^T + b, with Eigen row-major matrices (PyTorch's layout).
  {
    const Eigen::Index n = 512, in = 128, out = 64;
    const RowMatrix x = correlated_inputs(n, in, gen);
    RowMatrix w(out, in);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = g(gen) / std::sqrt(float(in));
    Eigen::RowVectorXf b = Eigen::RowVectorXf::Constant(out, 0.1f);
    const RowMatrix y = (x * w.transpose()).rowwise() + b;

    const adaquant::layer_result r = adaquant::adaquant_layer(
        adaquant::layer_geometry::of(adaquant::linear_geometry{128, 64}),
        {w.data(), size_t(w.size())}, {b.data(), size_t(b.size())}, {x.data(), size_t(x.size())},
        {y.data(), size_t(y.size())}, adaquant::output_activation::relu, w4a4, opt);
    print("linear 128->64 + ReLU", r);
    // r.weights (on the 4-bit grid), r.bias, r.weight_params and r.act_params are what a
    // runtime needs; e.g. back into Eigen:
    const Eigen::Map<const RowMatrix> wq(r.weights.data(), out, in);
    std::printf("  weight change |Wq - W|_F / |W|_F = %.3f\n", (wq - w).norm() / w.norm());
  }

  // Conv 16 -> 32, 3x3, padding 1, stride 2 on 16x16 inputs (NCHW).
  {
    adaquant::conv2d_geometry c;
    c.in_channels = 16;
    c.out_channels = 32;
    c.in_h = c.in_w = 16;
    c.kernel_h = c.kernel_w = 3;
    c.pad_h = c.pad_w = 1;
    c.stride_h = c.stride_w = 2;
    const auto geo = adaquant::layer_geometry::of(c);
    const std::size_t n = 128;
    const RowMatrix x = correlated_inputs(Eigen::Index(n * 16), 256, gen);  // [N*C, H*W]
    std::vector<float> w(geo.weight_size()), b(32, 0.0f);
    for (float& v : w) v = g(gen) / 12.0f;
    std::vector<float> y(n * geo.output_per_sample());
    const std::span<const float> xs(x.data(), size_t(x.size()));
    adaquant::conv2d_forward(c, xs, w, b, y);
    const adaquant::layer_result r =
        adaquant::adaquant_layer(geo, w, b, xs, y, adaquant::output_activation::relu, w4a4, opt);
    print("conv 16->32 3x3 s2 + ReLU", r);
  }
  return 0;
}
