#pragma once
// The customisation point through which adaquant reads any user tensor type, the way {fmt} users
// specialise formatter<T>. A specialisation provides:
//
//   template <> struct adaquant::tensor_traits<my_tensor> {
//     using value_type = float;
//     static float* data(my_tensor& t);               // mutable access (optional)
//     static const float* data(const my_tensor& t);   // read access
//     static adaquant::tensor_shape shape(const my_tensor& t);  // extents + element strides
//   };
//
// The data must be dense (see tensor_shape::is_dense). Adapters for std, Eigen and xtensor types
// live in adaquant/adapters/ and are opt-in includes.

#include <adaquant/core/tensor_view.hpp>

namespace adaquant {

template <class T, class Enable = void>
struct tensor_traits;  // undefined: not a tensor

// Views are tensors.
template <class T>
struct tensor_traits<tensor_view<T>> {
  using value_type = std::remove_const_t<T>;
  static T* data(const tensor_view<T>& v) noexcept { return v.data(); }
  static tensor_shape shape(const tensor_view<T>& v) noexcept { return v.shape(); }
};

}  // namespace adaquant
