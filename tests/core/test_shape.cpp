#include <adaquant/core/concepts.hpp>

#include <catch2/catch.hpp>

namespace aq = adaquant;

TEST_CASE("packed shapes are dense in either order; holes and overlaps are not") {
  auto s = aq::tensor_shape::packed({2, 3, 4});
  CHECK(s.strides[0] == 12);
  CHECK(s.strides[2] == 1);
  CHECK(s.is_dense());
  CHECK(aq::tensor_shape::packed({2, 3, 4}, aq::memory_order::col_major).is_dense());
  auto holes = s;
  holes.strides[0] = 13;
  CHECK(!holes.is_dense());
  auto overlap = s;
  overlap.strides[1] = 1;
  CHECK(!overlap.is_dense());
  CHECK(aq::tensor_shape::packed({0, 3}).size() == 0);
  CHECK(aq::tensor_shape::packed({3, 0}).is_dense());  // empty, whatever the strides say
  CHECK_NOTHROW(aq::tensor_view<float>(nullptr, {3, 0}));
}

TEST_CASE("channel_layout splits a dense tensor along an axis") {
  const auto s = aq::tensor_shape::packed({2, 3, 4});
  const auto l1 = aq::channel_layout::of(s, 1);
  CHECK(l1.outer == 2);
  CHECK(l1.channels == 3);
  CHECK(l1.inner == 4);
  const auto l0 =
      aq::channel_layout::of(aq::tensor_shape::packed({2, 3, 4}, aq::memory_order::col_major), 0);
  CHECK(l0.inner == 1);
  CHECK(l0.channels == 2);
  CHECK(l0.outer == 12);
  CHECK_THROWS_AS(aq::channel_layout::of(s, 3), aq::error);
}

TEST_CASE("tensor_view rejects non-dense strides, null data and ranks above 8") {
  float x[4]{};
  auto s = aq::tensor_shape::packed({2, 2});
  s.strides[0] = 3;
  CHECK_THROWS_WITH(aq::tensor_view<float>(x, s), Catch::Contains("dense"));
  CHECK_THROWS_WITH(aq::tensor_view<float>(nullptr, {2, 2}), Catch::Contains("null"));
  CHECK_NOTHROW(aq::tensor_view<float>(nullptr, {0}));
  CHECK_THROWS_WITH(aq::tensor_shape::packed({1, 1, 1, 1, 1, 1, 1, 1, 1}), Catch::Contains("rank"));
  bool thrown = false;
  try {
    (void)aq::tensor_view<float>(nullptr, {2});
  } catch (const aq::error& e) {
    thrown = true;
    CHECK(e.code() == aq::errc::invalid_argument);
  }
  CHECK(thrown);
}
