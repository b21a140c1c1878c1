// Adapters expose the right shape and layout, and kernels give the same result through each.
#include <adaquant/adapters/eigen.hpp>
#include <adaquant/adapters/std.hpp>
#include <adaquant/adapters/xtensor.hpp>
#include <adaquant/adaquant.hpp>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include <catch2/catch.hpp>

#include <vector>

namespace aq = adaquant;

namespace {
// A user's own tensor type, adapted in a dozen lines.
struct my_tensor {
  std::vector<float> values;
  std::size_t rows = 0, cols = 0;
};
}  // namespace

template <>
struct adaquant::tensor_traits<my_tensor> {
  using value_type = float;
  static float* data(my_tensor& t) { return t.values.data(); }
  static const float* data(const my_tensor& t) { return t.values.data(); }
  static tensor_shape shape(const my_tensor& t) { return tensor_shape::packed({t.rows, t.cols}); }
};

TEST_CASE("Eigen matrices: extents {rows, cols}, strides follow the storage order") {
  Eigen::MatrixXf col = Eigen::MatrixXf::Zero(3, 4);
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> row =
      Eigen::MatrixXf::Zero(3, 4);
  const auto sc = aq::view(col).shape();
  const auto sr = aq::view(row).shape();
  CHECK(sc.extents[0] == 3);
  CHECK(sc.extents[1] == 4);
  CHECK(sc.strides[0] == 1);
  CHECK(sc.strides[1] == 3);
  CHECK(sr.strides[0] == 4);
  CHECK(sr.strides[1] == 1);
  CHECK(aq::channel_layout::of(sc, 0).inner == 1);
  CHECK(aq::channel_layout::of(sr, 0).inner == 4);
}

TEST_CASE("per-row quantization gives the same values for row- and column-major Eigen matrices") {
  Eigen::MatrixXf col = Eigen::MatrixXf::Random(6, 37);
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> row = col;
  aq::channel_params p;
  p.axis = 0;
  p.qmin = -8;
  p.qmax = 7;
  for (int r = 0; r < 6; ++r) {
    p.scale.push_back(0.05f + 0.02f * static_cast<float>(r));
    p.zero_point.push_back(0);
  }
  Eigen::MatrixXf out_col(6, 37);
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> out_row(6, 37);
  aq::fake_quant_per_channel(col, out_col, p);
  aq::fake_quant_per_channel(row, out_row, p);
  CHECK((out_col.array() == out_row.array()).all());
  // Row 5 uses scale[5]: its values are multiples of it.
  const float q = out_col(5, 3) / p.scale[5];
  CHECK(q == std::nearbyint(q));
}

TEST_CASE("xtensor containers and xt::adapt work through the same kernels") {
  xt::xarray<float> a = {{-1.0f, -0.5f, 0.0f}, {0.25f, 0.5f, 2.0f}};
  xt::xtensor<float, 2> b = xt::zeros<float>({2, 3});
  const aq::quant_params p{0.25f, 0, -8, 7};
  aq::fake_quant_per_tensor(a, b, p);
  CHECK(b(1, 2) == 1.75f);  // saturated at qmax * scale
  std::vector<float> storage(6, 0.0f);
  auto adapted = xt::adapt(storage, std::vector<std::size_t>{2, 3});
  aq::fake_quant_per_tensor(a, adapted, p);
  CHECK(storage[5] == 1.75f);
  const auto s = aq::view(xt::xtensor<float, 3>(xt::zeros<float>({2, 1, 4}))).shape();
  CHECK(s.rank == 3);
  CHECK(s.is_dense());
}

TEST_CASE("a user-defined tensor adapted through tensor_traits is quantized like any other") {
  my_tensor t{{-0.4f, 0.1f, 0.3f, 0.9f}, 2, 2};
  my_tensor out{std::vector<float>(4), 2, 2};
  const auto p = aq::params_from_range({4, true, true, false}, -1.0f, 1.0f);
  aq::fake_quant_per_tensor(t, out, p);
  std::vector<float> ref(4);
  aq::fake_quant_per_tensor(t.values, ref, p);
  CHECK(out.values == ref);
}

TEST_CASE("std adapters: vector, array and span are rank-1") {
  std::array<float, 4> a{1, 2, 3, 4};
  CHECK(aq::view(a).size() == 4);
  CHECK(aq::view(std::span<const float>(a)).rank() == 1);
}
