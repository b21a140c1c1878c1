#pragma once
// C = A B with Eigen's GEMM kernel, the same bits for a sample whatever the batch it sits in.
//
// Eigen's product front end picks GEMV, a coefficient-wise loop or GEMM by size, and GEMM's cache
// blocking depends on all three sizes; each choice sums a dot product in another order. Here one
// dimension of every product is the batch (one column per sample of Gemm and MatMul; Conv runs
// direct, kernels/conv.hpp) and the others are fixed by the layer. So this calls the GEMM kernel
// directly, with cache blocking computed from the fixed dimensions and a nominal batch dimension,
// block sizes rounded to the kernel's register blocks (mr rows, nr columns), and the batch
// dimension padded to a multiple of both: every row and column of the batch then takes the same
// kernel path through the same k-blocks, whatever the batch size.

#include <adaquant/onnx/scratch.hpp>

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
  // Packing space for the two blocks (null: Eigen allocates it).
  void lend(float* a, float* b) noexcept {
    m_blockA = a;
    m_blockB = b;
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
  // Packing space for both operand blocks, of the sizes general_matrix_matrix_product's
  // sequential path uses (else it allocates them on every product).
  struct block_a;
  struct block_b;
  using aligned = Eigen::aligned_allocator<float>;
  const auto kc = static_cast<std::size_t>(blocking.kc()),
             mc = static_cast<std::size_t>(blocking.mc()),
             nc = static_cast<std::size_t>(blocking.nc());
  const thread_scratch<block_a, aligned> pa(kc * std::min(m, mc));
  const thread_scratch<block_b, aligned> pb(kc * std::min(n, nc));
  blocking.lend(pa.data(), pb.data());
  Eigen::internal::general_matrix_matrix_product<
      Index, float, LhsOrder, false, float, RhsOrder, false, Eigen::ColMajor,
      1>::run(static_cast<Index>(m), static_cast<Index>(n), static_cast<Index>(k), a,
              static_cast<Index>(lda), b, static_cast<Index>(ldb), c, 1, static_cast<Index>(ldc),
              1.0f, blocking, nullptr);
}

// Y[s][o] = sum_k W[o][k] X[s][k] for s < samples: a linear layer over a batch (rows of X are
// samples). The result of a sample does not depend on `samples`: the whole multiples of
// padded_batch's block are multiplied in place, the rest through a zero-padded block (every
// column takes the same kernel path either way).
inline void linear_batch(const float* w, std::size_t out, std::size_t in, const float* x,
                         std::size_t samples, float* y) {
  const std::size_t block = padded_batch(1), whole = samples / block * block;
  if (whole) gemm<Eigen::RowMajor, Eigen::ColMajor>(false, out, whole, in, w, in, x, in, y, out);
  const std::size_t rest = samples - whole;
  if (!rest) return;
  std::vector<float> xp(block * in, 0.0f), yp(block * out);
  std::copy(x + whole * in, x + samples * in, xp.begin());
  gemm<Eigen::RowMajor, Eigen::ColMajor>(false, out, block, in, w, in, xp.data(), in, yp.data(),
                                         out);
  std::copy(yp.begin(), yp.begin() + static_cast<std::ptrdiff_t>(rest * out), y + whole * out);
}

}  // namespace adaquant::onnx::detail
