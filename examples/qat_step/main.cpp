// One quantization-aware training step of a tiny linear layer with adaquant's public STE pieces:
//   forward:  Wq = fake_quant_per_channel(W, mask_w), Xq = fake_quant_per_tensor(X, mask_x),
//             Y = Xq Wq^T, loss = mean (Y - T)^2
//   backward: dL/dWq = dY^T Xq, dL/dXq = dY Wq (plain calculus), then
//             fake_quant_backward_per_channel -> dL/dW (STE), dL/ds_w, dL/dz_w (LSQ)
//             fake_quant_backward_per_tensor  -> dL/ds_x, dL/dz_x
//   update:   SGD on W and the scales.

#include <adaquant/adapters/eigen.hpp>
#include <adaquant/kernels/fake_quant_backward.hpp>

#include <Eigen/Core>

#include <cstdio>
#include <random>
#include <vector>

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

int main() {
  const Eigen::Index batch = 32, in = 16, out = 8;
  std::mt19937 gen(3);
  std::normal_distribution<float> g(0.0f, 1.0f);
  RowMatrix x(batch, in), w(out, in), teacher(out, in);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = std::abs(g(gen));
  for (Eigen::Index i = 0; i < w.size(); ++i) teacher.data()[i] = 0.25f * g(gen);
  w = teacher + RowMatrix::Constant(out, in, 0.02f);  // a student near the teacher
  const RowMatrix target = x * teacher.transpose();

  // 4-bit per-channel symmetric weights, 4-bit per-tensor affine inputs.
  adaquant::channel_params wp = adaquant::channel_params_from_ranges(
      {4, true, true, false}, std::vector<float>(out, -0.8f), std::vector<float>(out, 0.8f), 0);
  adaquant::quant_params xp = adaquant::params_from_range({4, false, false, false}, 0.0f, 3.0f);

  const auto step = [&](bool update) {
    RowMatrix wq(out, in), xq(batch, in);
    std::vector<std::uint8_t> mw(size_t(w.size())), mx(size_t(x.size()));
    adaquant::fake_quant_per_channel(w, wq, wp, mw);
    adaquant::fake_quant_per_tensor(x, xq, xp, mx);
    const RowMatrix y = xq * wq.transpose();
    const RowMatrix dy = (y - target) * (2.0f / float(y.size()));
    const float loss = (y - target).squaredNorm() / float(y.size());
    if (!update) return loss;
    const RowMatrix dwq = dy.transpose() * xq;  // dL/dWq
    const RowMatrix dxq = dy * wq;              // dL/dXq
    RowMatrix dw(out, in);
    std::vector<float> dws(static_cast<std::size_t>(out)), dwz(static_cast<std::size_t>(out));
    adaquant::fake_quant_backward_per_channel(w, wq, mw, dwq, wp, {dw.data(), size_t(dw.size())},
                                              dws, dwz);
    const adaquant::quantizer_grad dx =
        adaquant::fake_quant_backward_per_tensor(x, xq, mx, dxq, xp);
    w -= 0.2f * dw;
    for (Eigen::Index c = 0; c < out; ++c) wp.scale[size_t(c)] -= 1e-3f * dws[size_t(c)];
    xp.scale -= 1e-3f * dx.scale;
    std::printf("grad: |dL/dW| %.4g, dL/ds_x %.4g, dL/dz_x %.4g\n", dw.norm(), dx.scale,
                dx.zero_point);
    return loss;
  };
  const float before = step(true);
  const float after = step(false);
  std::printf("QAT step: loss %.6g -> %.6g\n", before, after);
  return after < before ? 0 : 1;
}
