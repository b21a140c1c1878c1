#pragma once
// xtensor adapters: every dense container (xt::xarray, xt::xtensor, xt::adapt(...) adaptors)
// with row- or column-major layout. Strides are recomputed from the layout because xtensor
// reports stride 0 for unit axes.

#include <adaquant/core/concepts.hpp>

#include <xtensor/xcontainer.hpp>
#include <xtensor/xlayout.hpp>

#include <type_traits>

namespace adaquant {
namespace detail {
template <class T>
concept xtensor_container = std::is_base_of_v<xt::xcontainer<T>, T>;

template <class T>
tensor_shape xtensor_shape(const T& t) {
  std::array<std::size_t, max_rank> dims{};
  const std::size_t r = t.dimension();
  if (!(r <= max_rank))
    detail::fail(errc::invalid_argument, "tensor_traits<xtensor>: tensor",
                 "rank must be at most 8");
  for (std::size_t i = 0; i < r; ++i) dims[i] = t.shape()[i];
  if (!(t.layout() == xt::layout_type::row_major || t.layout() == xt::layout_type::column_major))
    detail::fail(errc::invalid_argument, "tensor_traits<xtensor>: tensor",
                 "layout must be row_major or column_major");
  return tensor_shape::packed(
      std::span<const std::size_t>(dims.data(), r),
      t.layout() == xt::layout_type::row_major ? memory_order::row_major : memory_order::col_major);
}
}  // namespace detail

template <detail::xtensor_container T>
struct tensor_traits<T> {
  using value_type = std::remove_const_t<typename T::value_type>;
  static auto* data(T& t) noexcept { return t.data(); }
  static const value_type* data(const T& t) noexcept { return t.data(); }
  static tensor_shape shape(const T& t) { return detail::xtensor_shape(t); }
};

}  // namespace adaquant
