#pragma once
// Tensor concepts, built in small steps:
//   TensorLike         tensor_traits<T> gives value_type, const data() and shape()
//   DenseTensor        ... with an arithmetic value_type (what every algorithm reads)
//   MutableDenseTensor ... whose data() yields a mutable pointer for a non-const T
//   FloatTensor / MutableFloatTensor: value_type is float (what kernels and objectives compute in)

#include <adaquant/core/tensor_traits.hpp>

#include <concepts>
#include <type_traits>

namespace adaquant {

template <class T>
using traits_of = tensor_traits<std::remove_cvref_t<T>>;

template <class T>
concept TensorLike = requires(const std::remove_cvref_t<T>& t) {
  typename traits_of<T>::value_type;
  { traits_of<T>::shape(t) } -> std::same_as<tensor_shape>;
  { traits_of<T>::data(t) } -> std::convertible_to<const typename traits_of<T>::value_type*>;
};

template <TensorLike T>
using tensor_value_t = typename traits_of<T>::value_type;

template <class T>
concept DenseTensor = TensorLike<T> && std::is_arithmetic_v<tensor_value_t<T>>;

// Mutability follows what tensor_traits::data yields for T as given (with its constness): a
// const std::vector is read-only, a const tensor_view<float> still refers to mutable data.
template <class T>
concept MutableDenseTensor = DenseTensor<T> && requires(std::remove_reference_t<T>& t) {
  { traits_of<T>::data(t) } -> std::same_as<tensor_value_t<T>*>;
};

template <class T>
concept FloatTensor = DenseTensor<T> && std::same_as < tensor_value_t<T>,
float > ;

template <class T>
concept MutableFloatTensor = MutableDenseTensor<T> && FloatTensor<T>;

// Read-only view of any dense tensor.
template <DenseTensor T>
[[nodiscard]] tensor_view<const tensor_value_t<T>> view(const T& t) {
  return {traits_of<T>::data(t), traits_of<T>::shape(t)};
}

// Mutable view of any mutable dense tensor.
template <class T>
requires MutableDenseTensor<T>
[[nodiscard]] tensor_view<tensor_value_t<T>> mutable_view(T&& t) {
  return {traits_of<T>::data(t), traits_of<T>::shape(t)};
}

}  // namespace adaquant
