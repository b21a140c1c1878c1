#pragma once
// Eigen adapters: Matrix, Array (any storage order) and Map of them with the default (dense)
// stride are rank-2 tensors with extents {rows, cols}; strides follow the storage order, so
// per-channel quantization along axis 0 means "per row" whatever the layout.

#include <adaquant/core/concepts.hpp>

#include <Eigen/Core>

#include <type_traits>

namespace adaquant {
namespace detail {
template <class D>
tensor_shape eigen_shape(const D& m) {
  const auto order = D::IsRowMajor ? memory_order::row_major : memory_order::col_major;
  return tensor_shape::packed(
      {static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())}, order);
}
template <class T>
inline constexpr bool is_eigen_plain_v = std::is_base_of_v<Eigen::PlainObjectBase<T>, T>;
}  // namespace detail

template <class T>
struct tensor_traits<T, std::enable_if_t<detail::is_eigen_plain_v<T>>> {
  using value_type = typename T::Scalar;
  static value_type* data(T& m) noexcept { return m.data(); }
  static const value_type* data(const T& m) noexcept { return m.data(); }
  static tensor_shape shape(const T& m) { return detail::eigen_shape(m); }
};

template <class P, int Options>
struct tensor_traits<Eigen::Map<P, Options, Eigen::Stride<0, 0>>> {
  using map_type = Eigen::Map<P, Options, Eigen::Stride<0, 0>>;
  using value_type = typename P::Scalar;
  static value_type* data(const map_type& m) noexcept { return const_cast<map_type&>(m).data(); }
  static tensor_shape shape(const map_type& m) { return detail::eigen_shape(m); }
};

template <class P, int Options>
struct tensor_traits<Eigen::Map<const P, Options, Eigen::Stride<0, 0>>> {
  using map_type = Eigen::Map<const P, Options, Eigen::Stride<0, 0>>;
  using value_type = typename P::Scalar;
  static const value_type* data(const map_type& m) noexcept { return m.data(); }
  static tensor_shape shape(const map_type& m) { return detail::eigen_shape(m); }
};

}  // namespace adaquant
