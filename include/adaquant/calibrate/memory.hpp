#pragma once
// The memory the calibration caches take, checked before any work starts. Calibration keeps one
// layer's cache at a time per worker: the layer's inputs and full-precision outputs for every
// calibration sample, in float,
//   cache(layer) = samples * (input_per_sample + output_per_sample) * 4 bytes,
// and `concurrent` layers at once (AdaQuant in parallel order and range estimation take
// `threads` layers at a time; sequential AdaQuant one). The estimate is the largest layer's
// cache times `concurrent`; working memory of the objective (gradients, packed weights) and
// the network's own activations come on top. When the estimate exceeds the limit
// (execution_context::memory_limit, or the memory the system reports available), the run fails
// with errc::infeasible naming the layer and the figures, before the network is changed. Block
// reconstruction holds a block's cache instead: its inputs and output, and every layer's inputs
// and outputs inside it (calibrate/driver.hpp checks the largest block's too).

#include <adaquant/calibrate/network.hpp>
#include <adaquant/core/error.hpp>
#include <adaquant/core/execution.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <optional>
#include <span>
#include <string>

namespace adaquant {

// MemAvailable of /proc/meminfo, in bytes; empty where the system does not report it.
[[nodiscard]] inline std::optional<std::size_t> available_memory() {
  std::ifstream f("/proc/meminfo");
  std::string line;
  while (std::getline(f, line)) {
    unsigned long long kb = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kb) == 1)
      return static_cast<std::size_t>(kb) * 1024;
  }
  return std::nullopt;
}

struct cache_estimate {
  double bytes = 0.0;          // the largest layer's cache times `concurrent`
  std::size_t layer_id = 0;    // that layer
  std::size_t per_sample = 0;  // its floats per sample (inputs + outputs)
  std::string block{};         // not empty: the cache is this block's (calibrate/driver.hpp)
};

[[nodiscard]] inline cache_estimate estimate_cache(std::span<const layer_desc> layers,
                                                   std::size_t samples, std::size_t concurrent) {
  cache_estimate e;
  for (const layer_desc& d : layers) {
    const std::size_t per = d.geometry.input_per_sample() + d.geometry.output_per_sample();
    const double bytes = static_cast<double>(samples) * static_cast<double>(per) * sizeof(float) *
                         static_cast<double>(concurrent);
    if (bytes > e.bytes) e = {bytes, d.id, per};
  }
  return e;
}

// The caches' limit: context.memory_limit, or, when that is 0, the memory the system reports
// available (none when it reports nothing).
[[nodiscard]] inline std::optional<std::size_t> cache_limit(const execution_context& ctx) {
  return ctx.memory_limit ? std::optional<std::size_t>(ctx.memory_limit) : available_memory();
}

// Whether the cache e fits `limit` (cache_limit; always, when there is none).
[[nodiscard]] inline bool cache_fits(const cache_estimate& e, std::optional<std::size_t> limit) {
  return !limit || e.bytes <= static_cast<double>(*limit);
}

// Fails (errc::infeasible, named by `where`) when the cache e would not fit.
inline void check_cache_memory(const cache_estimate& e, std::size_t samples, std::size_t concurrent,
                               const execution_context& ctx, const std::string& where) {
  const std::optional<std::size_t> limit = cache_limit(ctx);  // read once: it names the limit too
  if (cache_fits(e, limit)) return;
  constexpr double mib = 1024.0 * 1024.0;
  const std::string unit =
      e.block.empty() ? "layer " + std::to_string(e.layer_id) : "block " + e.block;
  const char* units = e.block.empty() ? "layer(s)" : "block(s)";
  char buf[1024];  // room for long node names in a block's name
  std::snprintf(buf, sizeof buf,
                "the calibration caches need about %.1f MiB (%s: %zu samples x %zu floats "
                "of inputs and outputs x 4 bytes, %zu %s at a time), more than the %.1f MiB "
                "%s; use fewer calibration samples or threads",
                e.bytes / mib, unit.c_str(), samples, e.per_sample, concurrent, units,
                static_cast<double>(*limit) / mib,
                ctx.memory_limit ? "of context.memory_limit" : "the system reports available");
  detail::fail(errc::infeasible, where, buf);
}

// The same for the largest layer's cache (estimate_cache).
inline void check_cache_memory(std::span<const layer_desc> layers, std::size_t samples,
                               std::size_t concurrent, const execution_context& ctx,
                               const std::string& where) {
  check_cache_memory(estimate_cache(layers, samples, concurrent), samples, concurrent, ctx, where);
}

// A capture batch (execution_context::capture_batch) whose largest layer's inputs and outputs
// take at most `bytes` (floats, as in estimate_cache), between 1 and `most` samples. The steps
// give the same bits for any capture batch; a smaller one only bounds the captures' working
// memory (the chunk's copies of inputs and outputs, and the activations a pass reuses).
[[nodiscard]] inline std::size_t capture_batch_within(std::span<const layer_desc> layers,
                                                      std::size_t bytes, std::size_t most) {
  std::size_t per = 1;
  for (const layer_desc& d : layers)
    per = std::max(per, d.geometry.input_per_sample() + d.geometry.output_per_sample());
  return std::clamp<std::size_t>(bytes / (per * sizeof(float)), 1, std::max<std::size_t>(1, most));
}

}  // namespace adaquant
