#pragma once
// Non-owning view of a dense tensor: pointer + shape. Algorithms take views; user types reach
// them through tensor_traits (see tensor_traits.hpp).

#include <adaquant/core/tensor_shape.hpp>

#include <span>
#include <type_traits>

namespace adaquant {

template <class T>
class tensor_view {
 public:
  using value_type = std::remove_const_t<T>;
  using element_type = T;

  constexpr tensor_view() = default;
  constexpr tensor_view(T* data, const tensor_shape& shape) : data_(data), shape_(shape) {
    if (!(shape.is_dense()))
      detail::fail(errc::invalid_argument, "tensor_view: shape",
                   "strides must describe a dense tensor, got shape " + to_string(shape));
    if (!(data != nullptr || shape.size() == 0))
      detail::fail(errc::invalid_argument, "tensor_view: data",
                   "null pointer for a non-empty tensor");
  }
  constexpr tensor_view(T* data, std::initializer_list<std::size_t> dims,
                        memory_order order = memory_order::row_major)
      : tensor_view(data, tensor_shape::packed(dims, order)) {}
  // A rank-1 view of a span.
  constexpr explicit tensor_view(std::span<T> s)
      : tensor_view(s.data(), tensor_shape::packed({s.size()})) {}
  // Mutable -> const conversion.
  template <class U>
  requires std::is_same_v<const U, T> &&
      (!std::is_same_v<U, T>)constexpr tensor_view(const tensor_view<U>& other)
      : data_(other.data()), shape_(other.shape()) {}

  [[nodiscard]] constexpr T* data() const noexcept { return data_; }
  [[nodiscard]] constexpr const tensor_shape& shape() const noexcept { return shape_; }
  [[nodiscard]] constexpr std::size_t rank() const noexcept { return shape_.rank; }
  [[nodiscard]] constexpr std::size_t size() const noexcept { return shape_.size(); }
  [[nodiscard]] constexpr bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] constexpr std::size_t extent(std::size_t axis) const { return shape_.extent(axis); }
  [[nodiscard]] constexpr std::span<T> span() const noexcept { return {data_, size()}; }

 private:
  T* data_ = nullptr;
  tensor_shape shape_{};
};

}  // namespace adaquant
