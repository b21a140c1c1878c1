// Static tests of the tensor concepts (positive and negative), mp-units style.
#include <adaquant/adapters/eigen.hpp>
#include <adaquant/adapters/std.hpp>
#include <adaquant/adapters/xtensor.hpp>
#include <adaquant/core/concepts.hpp>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <list>
#include <span>
#include <string>
#include <vector>

namespace aq = adaquant;

namespace {
struct not_a_tensor {};
}  // namespace

// TensorLike
static_assert(aq::TensorLike<std::vector<float>>);
static_assert(aq::TensorLike<const std::vector<float>&>);
static_assert(aq::TensorLike<std::array<float, 3>>);
static_assert(aq::TensorLike<std::span<const float>>);
static_assert(aq::TensorLike<aq::tensor_view<float>>);
static_assert(aq::TensorLike<Eigen::MatrixXf>);
static_assert(aq::TensorLike<Eigen::Matrix<float, 3, 4, Eigen::RowMajor>>);
static_assert(aq::TensorLike<Eigen::ArrayXXf>);
static_assert(aq::TensorLike<Eigen::Map<Eigen::MatrixXf>>);
static_assert(aq::TensorLike<Eigen::Map<const Eigen::MatrixXf>>);
static_assert(aq::TensorLike<xt::xarray<float>>);
static_assert(aq::TensorLike<xt::xtensor<float, 3>>);
static_assert(!aq::TensorLike<not_a_tensor>);
static_assert(!aq::TensorLike<std::list<float>>);
static_assert(!aq::TensorLike<float>);
static_assert(!aq::TensorLike<float*>);
// A strided Eigen map is not dense, so it has no adapter.
static_assert(!aq::TensorLike<Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>>>);

// DenseTensor: arithmetic elements only.
static_assert(aq::DenseTensor<std::vector<std::int8_t>>);
static_assert(!aq::DenseTensor<std::vector<std::string>>);

// MutableDenseTensor
static_assert(aq::MutableDenseTensor<std::vector<float>&>);
static_assert(!aq::MutableDenseTensor<const std::vector<float>&>);
static_assert(aq::MutableDenseTensor<std::span<float>>);
static_assert(!aq::MutableDenseTensor<std::span<const float>>);
static_assert(aq::MutableDenseTensor<aq::tensor_view<float>>);
static_assert(
    aq::MutableDenseTensor<const aq::tensor_view<float>&>);  // shallow: data stays mutable
static_assert(!aq::MutableDenseTensor<aq::tensor_view<const float>>);
static_assert(aq::MutableDenseTensor<Eigen::Map<Eigen::MatrixXf>>);
static_assert(!aq::MutableDenseTensor<Eigen::Map<const Eigen::MatrixXf>>);
static_assert(!aq::MutableDenseTensor<const Eigen::MatrixXf&>);
static_assert(aq::MutableDenseTensor<xt::xarray<float>&>);
static_assert(!aq::MutableDenseTensor<const xt::xarray<float>&>);

// FloatTensor
static_assert(aq::FloatTensor<Eigen::MatrixXf>);
static_assert(!aq::FloatTensor<Eigen::MatrixXd>);
static_assert(!aq::FloatTensor<std::vector<std::int8_t>>);
static_assert(aq::MutableFloatTensor<std::vector<float>&>);

TEST_CASE("static concept checks compiled") { SUCCEED("see static_asserts above"); }
