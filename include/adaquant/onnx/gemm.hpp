#pragma once
// C = A B with Eigen's GEMM kernel, the same bits for a sample whatever the batch it sits in.
//
// Eigen's product front end picks GEMV, a coefficient-wise loop or GEMM by size, and GEMM's cache
// blocking depends on all three sizes; each choice sums a dot product in another order. Here one
// dimension of every product is the batch (one column per sample of Gemm and MatMul; Conv runs
// direct, kernels/conv.hpp) and the others are fixed by the layer. So this calls the GEMM kernel directly, with
// cache blocking computed from the fixed dimensions and a nominal batch dimension, block sizes
// rounded to the kernel's register blocks (mr rows, nr columns), and the batch dimension padded
// to a multiple of both: every row and column of the batch then takes the same kernel path
// through the same k-blocks, whatever the batch size.

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <vector>

namespace adaquant::onnx::detail {

using gebp_float = Eigen::internal::gebp_traits<float, float>;

class fixed_blocking : public Eigen::internal::level3_blocking<float, float> {
 public:
  static constexpr Eigen::Index nominal = 4096;  // stands for the batch dimension
  // m, n: the fixed dimension and `nominal` for the batch one; k: the depth.
  fixed_blocking(Eigen::Index m, Eigen::Index n, Eigen::Index k) {
    constexpr Eigen::Index mr = gebp_float::mr, nr = gebp_float::nr;
    Eigen::internal::computeProductBlockingSizes<float, float>(k, m, n, Eigen::Index{1});
    m_kc = k;
    m_mc = std::max<Eigen::Index>(mr, m - m % mr);
    m_nc = std::max<Eigen::Index>(nr, n - n % nr);
  }
};

// The batch dimension rounded up to a multiple of both register blocks.
[[nodiscard]] inline std::size_t padded_batch(std::size_t n) noexcept {
  constexpr auto b = std::lcm(static_cast<std::size_t>(gebp_float::mr), static_cast<std::size_t>(gebp_float::nr));
  return (n + b - 1) / b * b;
}

// C[m, n] (column-major, leading dimension ldc) = A[m, k] * B[k, n] with A and B in the given
// storage orders (leading dimensions lda, ldb). batch_rows: m is the batch dimension (padded with
// padded_batch), else n is.
template <int LhsOrder, int RhsOrder>
void gemm(bool batch_rows, std::size_t m, std::size_t n, std::size_t k, const float* a,
          std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc) {
  using Eigen::Index;
  std::fill(c, c + ldc * n, 0.0f);
  if (m == 0 || n == 0 || k == 0) return;
  fixed_blocking blocking(batch_rows ? fixed_blocking::nominal : static_cast<Index>(m),
                          batch_rows ? static_cast<Index>(n) : fixed_blocking::nominal,
                          static_cast<Index>(k));
  Eigen::internal::general_matrix_matrix_product<Index, float, LhsOrder, false, float, RhsOrder,
                                                 false, Eigen::ColMajor, 1>::
      run(static_cast<Index>(m), static_cast<Index>(n), static_cast<Index>(k), a,
          static_cast<Index>(lda), b, static_cast<Index>(ldb), c, 1, static_cast<Index>(ldc),
          1.0f, blocking, nullptr);
}

// Y[s][o] = sum_k W[o][k] X[s][k] for s < samples: a linear layer over a batch (rows of X are
// samples). The result of a sample does not depend on `samples`.
inline void linear_batch(const float* w, std::size_t out, std::size_t in, const float* x,
                         std::size_t samples, float* y) {
  const std::size_t np = padded_batch(samples);
  std::vector<float> xp, yp(np * out);
  const float* xb = x;
  if (np != samples) {
    xp.assign(np * in, 0.0f);
    std::copy(x, x + samples * in, xp.begin());
    xb = xp.data();
  }
  gemm<Eigen::RowMajor, Eigen::ColMajor>(false, out, np, in, w, in, xb, in, yp.data(), out);
  std::copy(yp.begin(), yp.begin() + static_cast<std::ptrdiff_t>(samples * out), y);
}

}  // namespace adaquant::onnx::detail
