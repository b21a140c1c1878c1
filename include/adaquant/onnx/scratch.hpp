#pragma once
// Per-thread scratch storage for the runtime's kernels.

#include <cstddef>
#include <memory>
#include <vector>

namespace adaquant::onnx::detail {

// n floats of storage for one call of a kernel, kept per thread and per Tag between calls, so
// a kernel that packs weights or pads inputs on every call does not take fresh pages from the
// system each time (large allocations come back from the system zeroed, page by page). Requests
// above `keep` floats are served by storage of this object alone, so what a thread keeps stays
// bounded (at most `keep` floats per Tag). Contents are unspecified: the caller writes what it
// reads. One object per Tag may be alive on a thread at a time.
template <class Tag, class Alloc = std::allocator<float>>
class thread_scratch {
 public:
  static constexpr std::size_t keep = std::size_t{1} << 22;  // floats (16 MiB)
  explicit thread_scratch(std::size_t n) {
    std::vector<float, Alloc>& v = n <= keep ? kept() : own_;
    if (v.size() < n) v.resize(n);
    data_ = v.data();
  }
  thread_scratch(const thread_scratch&) = delete;
  thread_scratch& operator=(const thread_scratch&) = delete;
  [[nodiscard]] float* data() const noexcept { return data_; }

 private:
  static std::vector<float, Alloc>& kept() {
    thread_local std::vector<float, Alloc> v;
    return v;
  }
  std::vector<float, Alloc> own_;
  float* data_ = nullptr;
};

}  // namespace adaquant::onnx::detail
