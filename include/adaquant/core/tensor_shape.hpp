#pragma once
// Extents and element strides of a tensor of rank <= max_rank. Every algorithm in adaquant works on
// dense tensors: the strides are a permutation of packed strides (row-major, column-major or any
// other axis order), so the data is one contiguous block of size() elements.

#include <adaquant/core/error.hpp>

#include <array>
#include <cstddef>
#include <initializer_list>
#include <numeric>
#include <span>
#include <string>
#include <utility>

namespace adaquant {

inline constexpr std::size_t max_rank = 8;

enum class memory_order { row_major, col_major };

struct tensor_shape {
  std::size_t rank = 0;
  std::array<std::size_t, max_rank> extents{};
  std::array<std::ptrdiff_t, max_rank> strides{};  // in elements

  [[nodiscard]] constexpr std::size_t size() const noexcept {
    std::size_t n = 1;
    for (std::size_t i = 0; i < rank; ++i) n *= extents[i];
    return n;
  }
  [[nodiscard]] constexpr std::size_t extent(std::size_t axis) const { return extents[axis]; }
  [[nodiscard]] constexpr std::ptrdiff_t stride(std::size_t axis) const { return strides[axis]; }

  // Packed strides for `dims` in the given order.
  [[nodiscard]] static constexpr tensor_shape packed(std::span<const std::size_t> dims,
                                                     memory_order order = memory_order::row_major) {
    if (!(dims.size() <= max_rank))
      detail::fail(errc::invalid_argument, "tensor_shape::packed: dims",
                   "rank must be at most 8, got " + std::to_string(dims.size()));
    tensor_shape s;
    s.rank = dims.size();
    std::ptrdiff_t step = 1;
    for (std::size_t k = 0; k < s.rank; ++k) {
      const std::size_t i = order == memory_order::row_major ? s.rank - 1 - k : k;
      s.extents[i] = dims[i];
      s.strides[i] = step;
      step *= static_cast<std::ptrdiff_t>(dims[i]);
    }
    return s;
  }
  [[nodiscard]] static constexpr tensor_shape packed(std::initializer_list<std::size_t> dims,
                                                     memory_order order = memory_order::row_major) {
    return packed(std::span<const std::size_t>(dims.begin(), dims.size()), order);
  }

  // True when the strides of the non-unit axes, sorted, are packed (1, e0, e0*e1, ...), or when
  // the tensor is empty.
  [[nodiscard]] constexpr bool is_dense() const noexcept {
    for (std::size_t i = 0; i < rank; ++i)
      if (extents[i] == 0) return true;  // an empty tensor touches no memory
    std::array<std::size_t, max_rank> axes{};
    std::size_t m = 0;
    for (std::size_t i = 0; i < rank; ++i)
      if (extents[i] > 1) axes[m++] = i;
    for (std::size_t k = 1; k < m; ++k)  // insertion sort by stride: rank <= 8
      for (std::size_t j = k; j > 0 && strides[axes[j]] < strides[axes[j - 1]]; --j)
        std::swap(axes[j], axes[j - 1]);
    std::ptrdiff_t expect = 1;
    for (std::size_t k = 0; k < m; ++k) {
      if (strides[axes[k]] != expect) return false;
      expect *= static_cast<std::ptrdiff_t>(extents[axes[k]]);
    }
    return true;
  }

  friend constexpr bool operator==(const tensor_shape& a, const tensor_shape& b) noexcept {
    if (a.rank != b.rank) return false;
    for (std::size_t i = 0; i < a.rank; ++i)
      if (a.extents[i] != b.extents[i]) return false;
    return true;  // equal extents: strides may differ (layout is not part of the logical shape)
  }
};

[[nodiscard]] inline std::string to_string(const tensor_shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.rank; ++i) {
    if (i) out += ", ";
    out += std::to_string(s.extents[i]);
  }
  return out + "]";
}

// How one axis splits a dense tensor: element at linear offset o belongs to channel
// (o / inner) % channels. outer * channels * inner == size().
struct channel_layout {
  std::size_t outer = 1;
  std::size_t channels = 1;
  std::size_t inner = 1;

  [[nodiscard]] constexpr std::size_t size() const noexcept { return outer * channels * inner; }

  [[nodiscard]] static constexpr channel_layout of(const tensor_shape& s, std::size_t axis) {
    if (!(axis < s.rank))
      detail::fail(errc::invalid_argument, "channel_layout: axis",
                   "axis " + std::to_string(axis) + " is out of range for a tensor of rank " +
                       std::to_string(s.rank));
    if (!(s.is_dense()))
      detail::fail(errc::invalid_argument, "channel_layout: tensor", "tensor must be dense");
    channel_layout l;
    l.channels = s.extents[axis];
    // A unit axis has an arbitrary stride; any inner works because there is only one channel.
    l.inner = l.channels > 1 ? static_cast<std::size_t>(s.strides[axis]) : 1;
    const std::size_t n = s.size();
    l.outer = (l.channels * l.inner) == 0 ? 0 : n / (l.channels * l.inner);
    return l;
  }
};

// How blocks of `block` consecutive indices along one axis split a dense tensor: the element at
// linear offset (b * extent + e) * inner + i (b < outer, e < extent, i < inner) uses parameter
// (b * blocks() + e / block) * inner + i, i.e. the parameters form the tensor's shape with the
// axis' extent replaced by blocks(), in the tensor's memory order. Block j of a slice b is one
// contiguous chunk: rows(j) indices along the axis times `inner` elements.
struct block_layout {
  std::size_t outer = 1;
  std::size_t extent = 1;
  std::size_t inner = 1;
  std::size_t block = 1;

  [[nodiscard]] constexpr std::size_t size() const noexcept { return outer * extent * inner; }
  [[nodiscard]] constexpr std::size_t blocks() const noexcept {
    return (extent + block - 1) / block;
  }
  [[nodiscard]] constexpr std::size_t params() const noexcept { return outer * blocks() * inner; }
  // Indices along the axis in block j (block, or fewer for the last).
  [[nodiscard]] constexpr std::size_t rows(std::size_t j) const noexcept {
    const std::size_t first = j * block;
    return extent - first < block ? extent - first : block;
  }

  // Calls f(offset, chunk, first_param) for every block in memory order. The block's elements are
  // the contiguous chunk at `offset` of rows(j) * inner elements, laid out as `chunk` (one run of
  // rows(j) when inner == 1, else rows(j) rows of `inner` channels), whose channel c uses
  // parameter first_param + c: every per-block kernel is a per-channel kernel on each chunk.
  template <class F>
  constexpr void for_each_chunk(F&& f) const {
    const std::size_t nb = blocks();
    for (std::size_t b = 0; b < outer; ++b)
      for (std::size_t j = 0; j < nb; ++j) {
        const std::size_t r = rows(j);
        const channel_layout chunk =
            inner == 1 ? channel_layout{1, 1, r} : channel_layout{r, inner, 1};
        f((b * extent + j * block) * inner, chunk, (b * nb + j) * inner);
      }
  }

  // block >= 1 (the caller has checked it, granularity::validate).
  [[nodiscard]] static constexpr block_layout of(const tensor_shape& s, std::size_t axis,
                                                 std::size_t block) {
    const channel_layout c = channel_layout::of(s, axis);
    return {c.outer, c.channels, c.inner, block};
  }
};

}  // namespace adaquant
