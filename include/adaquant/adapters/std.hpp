#pragma once
// std adapters: std::vector<T>, std::array<T, N> and std::span<T> are rank-1 tensors.
// For a raw pointer + shape, build a tensor_view directly: tensor_view<float>(ptr, {n, c, h, w}).

#include <adaquant/core/concepts.hpp>

#include <array>
#include <span>
#include <vector>

namespace adaquant {

template <class T, class A>
struct tensor_traits<std::vector<T, A>> {
  using value_type = T;
  static T* data(std::vector<T, A>& v) noexcept { return v.data(); }
  static const T* data(const std::vector<T, A>& v) noexcept { return v.data(); }
  static tensor_shape shape(const std::vector<T, A>& v) { return tensor_shape::packed({v.size()}); }
};

template <class T, std::size_t N>
struct tensor_traits<std::array<T, N>> {
  using value_type = T;
  static T* data(std::array<T, N>& v) noexcept { return v.data(); }
  static const T* data(const std::array<T, N>& v) noexcept { return v.data(); }
  static tensor_shape shape(const std::array<T, N>&) { return tensor_shape::packed({N}); }
};

template <class T, std::size_t E>
struct tensor_traits<std::span<T, E>> {
  using value_type = std::remove_const_t<T>;
  static T* data(const std::span<T, E>& s) noexcept { return s.data(); }
  static tensor_shape shape(const std::span<T, E>& s) { return tensor_shape::packed({s.size()}); }
};

}  // namespace adaquant
