#pragma once
// Argument checks shared by the public kernel entry points.

#include <adaquant/core/error.hpp>
#include <adaquant/core/tensor_view.hpp>
#include <adaquant/quant/quant_params.hpp>

#include <limits>
#include <span>
#include <string>

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

template <class Int>
void check_storage(std::int32_t qmin, std::int32_t qmax, const char* fn) {
  if (!(qmin >= std::numeric_limits<Int>::min() && qmax <= std::numeric_limits<Int>::max()))
    fail(errc::invalid_argument, arg(fn, "output"),
         "grid [" + std::to_string(qmin) + ", " + std::to_string(qmax) +
             "] does not fit the output integer type");
}

}  // namespace adaquant::detail
