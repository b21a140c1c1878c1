#pragma once
// The runtime's owning tensor: row-major float data + extents (NCHW for feature maps, NF for
// logits, OIHW for conv weights, [out, in] for linear weights). Adapted to adaquant through
// tensor_traits, so every adaquant algorithm takes it directly.

#include <adaquant/core/error.hpp>
#include <adaquant/core/tensor_traits.hpp>

#include <cstddef>
#include <initializer_list>
#include <numeric>
#include <span>
#include <string>
#include <vector>

namespace adaquant::examples {

class tensor {
 public:
  tensor() = default;
  explicit tensor(std::vector<std::size_t> shape, float fill = 0.0f)
      : shape_(std::move(shape)), data_(element_count(shape_), fill) {}
  tensor(std::initializer_list<std::size_t> shape, float fill = 0.0f)
      : tensor(std::vector<std::size_t>(shape), fill) {}
  tensor(std::vector<std::size_t> shape, std::vector<float> data)
      : shape_(std::move(shape)), data_(std::move(data)) {
    if (!(data_.size() == element_count(shape_)))
      detail::fail(errc::shape_mismatch, "tensor: data",
                   "expected " + std::to_string(element_count(shape_)) + " values, got " +
                       std::to_string(data_.size()));
  }

  [[nodiscard]] const std::vector<std::size_t>& shape() const noexcept { return shape_; }
  [[nodiscard]] std::size_t rank() const noexcept { return shape_.size(); }
  [[nodiscard]] std::size_t dim(std::size_t axis) const { return shape_.at(axis); }
  [[nodiscard]] std::size_t size() const noexcept { return data_.size(); }
  [[nodiscard]] bool empty() const noexcept { return data_.empty(); }
  [[nodiscard]] float* data() noexcept { return data_.data(); }
  [[nodiscard]] const float* data() const noexcept { return data_.data(); }
  [[nodiscard]] std::span<float> span() noexcept { return data_; }
  [[nodiscard]] std::span<const float> span() const noexcept { return data_; }
  [[nodiscard]] std::vector<float>& values() noexcept { return data_; }
  [[nodiscard]] const std::vector<float>& values() const noexcept { return data_; }
  float& operator[](std::size_t i) noexcept { return data_[i]; }
  float operator[](std::size_t i) const noexcept { return data_[i]; }

  [[nodiscard]] tensor_view<float> view() { return {data(), packed_shape()}; }
  [[nodiscard]] tensor_view<const float> view() const { return {data(), packed_shape()}; }
  [[nodiscard]] tensor_shape packed_shape() const {
    return tensor_shape::packed(std::span<const std::size_t>(shape_));
  }

  // Elements per item of the leading (batch) axis.
  [[nodiscard]] std::size_t item_size() const noexcept {
    return shape_.empty() || shape_[0] == 0 ? 0 : data_.size() / shape_[0];
  }
  // A copy of items [begin, end) of the leading axis (errc::invalid_argument outside it).
  [[nodiscard]] tensor items(std::size_t begin, std::size_t end) const {
    if (!(!shape_.empty() && begin <= end && end <= shape_[0]))
      detail::fail(errc::invalid_argument, "tensor::items: begin, end",
                   std::to_string(begin) + " to " + std::to_string(end) +
                       " is not within the leading axis");
    std::vector<std::size_t> shape = shape_;
    shape[0] = end - begin;
    const auto per = static_cast<std::ptrdiff_t>(item_size());
    return tensor(std::move(shape),
                  std::vector<float>(data_.begin() + static_cast<std::ptrdiff_t>(begin) * per,
                                     data_.begin() + static_cast<std::ptrdiff_t>(end) * per));
  }

  static std::size_t element_count(const std::vector<std::size_t>& s) {
    return std::accumulate(s.begin(), s.end(), std::size_t{1}, std::multiplies<>());
  }

 private:
  std::vector<std::size_t> shape_;
  std::vector<float> data_;
};

inline std::string shape_string(const std::vector<std::size_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace adaquant::examples

template <>
struct adaquant::tensor_traits<adaquant::examples::tensor> {
  using value_type = float;
  static float* data(adaquant::examples::tensor& t) noexcept { return t.data(); }
  static const float* data(const adaquant::examples::tensor& t) noexcept { return t.data(); }
  static adaquant::tensor_shape shape(const adaquant::examples::tensor& t) {
    return t.packed_shape();
  }
};
