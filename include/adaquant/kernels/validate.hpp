#pragma once
// Argument checks shared by the public kernel entry points.

#include <adaquant/core/error.hpp>
#include <adaquant/core/numeric.hpp>
#include <adaquant/core/tensor_view.hpp>
#include <adaquant/quant/quant_params.hpp>

#include <limits>
#include <span>
#include <string>
#include <string_view>

namespace adaquant::detail {

inline std::string arg(const char* fn, const char* name) { return std::string(fn) + ": " + name; }

template <class T, class U>
void check_same_shape(const tensor_view<T>& x, const tensor_view<U>& y, const char* fn) {
  if (!(x.shape() == y.shape()))
    fail(errc::shape_mismatch, arg(fn, "output"),
         "output shape " + to_string(y.shape()) + " differs from input shape " +
             to_string(x.shape()));
}

inline void check_mask(std::span<const std::uint8_t> mask, std::size_t n, const char* fn) {
  if (!(mask.empty() || mask.size() == n))
    fail(errc::shape_mismatch, arg(fn, "ste_mask"),
         "mask has " + std::to_string(mask.size()) + " elements, input has " + std::to_string(n) +
             " (pass an empty span for no mask)");
}

inline std::string describe_non_finite(float v) {
  return v != v ? "NaN" : (v > 0.0f ? "+inf" : "-inf");
}

// Throws errc::empty_input naming `where` when n == 0.
inline void check_not_empty(std::size_t n, std::string_view where) {
  if (!(n > 0)) fail(errc::empty_input, where, "tensor is empty (0 elements)");
}

// Throws errc::non_finite for the first NaN or +-inf in x[0, n), with its offset. Used on the
// error path of the one-pass kernels (which only flag that something was non-finite) and by
// estimators that have no such pass.
inline void check_finite(const float* x, std::size_t n, std::string_view where) {
  for (std::size_t i = 0; i < n; ++i)
    if (!is_finite(x[i]))
      fail(errc::non_finite, where,
           "element " + std::to_string(i) + " is " + describe_non_finite(x[i]) +
               " (range estimators need finite values)");
}

inline channel_layout check_channels(const tensor_shape& s, const channel_params& p,
                                     const char* fn) {
  p.validate(arg(fn, "params").c_str());
  if (!(p.axis < s.rank))
    fail(errc::invalid_argument, arg(fn, "params.axis"),
         "axis " + std::to_string(p.axis) + " is out of range for a tensor of rank " +
             std::to_string(s.rank));
  if (!(s.extent(p.axis) == p.channels()))
    fail(errc::shape_mismatch, arg(fn, "params"),
         std::to_string(p.channels()) + " channel parameters for axis " + std::to_string(p.axis) +
             " of extent " + std::to_string(s.extent(p.axis)) + " (shape " + to_string(s) + ")");
  return channel_layout::of(s, p.axis);
}

// `name`: how the caller calls its block_params argument.
inline block_layout check_blocks(const tensor_shape& s, const block_params& p, const char* fn,
                                 const char* name = "params") {
  const std::string where = arg(fn, name);
  p.validate(where.c_str());
  if (!(p.axis < s.rank))
    fail(errc::invalid_argument, where + ".axis",
         "axis " + std::to_string(p.axis) + " is out of range for a tensor of rank " +
             std::to_string(s.rank));
  const block_layout l = block_layout::of(s, p.axis, p.block_size);
  if (!(l.params() == p.blocks()))
    fail(errc::shape_mismatch, where,
         std::to_string(p.blocks()) + " block parameters for blocks of " +
             std::to_string(p.block_size) + " along axis " + std::to_string(p.axis) + " of shape " +
             to_string(s) + ", which has " + std::to_string(l.params()) + " blocks");
  return l;
}

template <class Int>
void check_storage(std::int32_t qmin, std::int32_t qmax, const char* fn) {
  if (!(qmin >= std::numeric_limits<Int>::min() && qmax <= std::numeric_limits<Int>::max()))
    fail(errc::invalid_argument, arg(fn, "output"),
         "grid [" + std::to_string(qmin) + ", " + std::to_string(qmax) +
             "] does not fit the output integer type");
}

}  // namespace adaquant::detail
