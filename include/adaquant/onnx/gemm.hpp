#pragma once
// C = A B with Eigen's GEMM kernel, the same bits for a column whatever the column count.
//
// Eigen's product front end picks GEMV, a coefficient-wise loop or GEMM by size, and GEMM's cache
// blocking depends on all three sizes; each choice sums a dot product in another order. A batch
// of images is the column axis here (im2col columns, or one column per sample), so to keep every
// sample's result independent of the batch it sits in, this calls the GEMM kernel directly with
// blocking sizes fixed by (rows, depth) alone and pads the columns to a multiple of the kernel's
// register block (nr): every column then takes the same path through the same k-blocks.

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace adaquant::onnx::detail {

class fixed_blocking : public Eigen::internal::level3_blocking<float, float> {
 public:
  fixed_blocking(Eigen::Index rows, Eigen::Index depth) {
    Eigen::Index k = depth, m = rows, n = 4096;  // nominal n: the blocking never sees the real one
    Eigen::internal::computeProductBlockingSizes<float, float>(k, m, n, Eigen::Index{1});
    m_kc = k;
    m_mc = m;
    m_nc = std::max<Eigen::Index>(nr, n - n % nr);
  }
  static constexpr Eigen::Index nr = Eigen::internal::gebp_traits<float, float>::nr;
};

// Columns rounded up to the kernel's register block.
[[nodiscard]] inline std::size_t padded_cols(std::size_t n) noexcept {
  const auto nr = static_cast<std::size_t>(fixed_blocking::nr);
  return (n + nr - 1) / nr * nr;
}

// C[m, n] (column-major, leading dimension ldc) = A[m, k] (row-major, lda) * B[k, n], B
// column-major (RhsOrder = Eigen::ColMajor: column j at b + j * ldb) or row-major (row r at
// b + r * ldb). n must be a multiple of fixed_blocking::nr (padded_cols): pad B and C.
template <int RhsOrder>
void gemm(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda,
          const float* b, std::size_t ldb, float* c, std::size_t ldc) {
  using Eigen::Index;
  std::fill(c, c + ldc * n, 0.0f);
  if (m == 0 || n == 0 || k == 0) return;
  fixed_blocking blocking(static_cast<Index>(m), static_cast<Index>(k));
  Eigen::internal::general_matrix_matrix_product<Index, float, Eigen::RowMajor, false, float,
                                                 RhsOrder, false, Eigen::ColMajor, 1>::
      run(static_cast<Index>(m), static_cast<Index>(n), static_cast<Index>(k), a,
          static_cast<Index>(lda), b, static_cast<Index>(ldb), c, 1, static_cast<Index>(ldc),
          1.0f, blocking, nullptr);
}

// Y[s][o] = sum_k W[o][k] X[s][k] for s < samples: a linear layer over a batch (rows of X are
// samples). The result of a sample does not depend on `samples`.
inline void linear_batch(const float* w, std::size_t out, std::size_t in, const float* x,
                         std::size_t samples, float* y) {
  const std::size_t np = padded_cols(samples);
  std::vector<float> xp, yp(np * out);
  const float* xb = x;
  if (np != samples) {
    xp.assign(np * in, 0.0f);
    std::copy(x, x + samples * in, xp.begin());
    xb = xp.data();
  }
  gemm<Eigen::ColMajor>(out, np, in, w, in, xb, in, yp.data(), out);
  std::copy(yp.begin(), yp.begin() + static_cast<std::ptrdiff_t>(samples * out), y);
}

}  // namespace adaquant::onnx::detail
