#pragma once
// How much a resumable pass keeps: the elements per sample of the values live before each node
// (computed before it, read at it or later, or a graph output), from the compiled probe shapes.
// A pass saved before node k holds count x live_elements(g)[k] elements (onnx_network uses it to
// bound what its full-precision passes keep; onnx/network.hpp).

#include <adaquant/onnx/graph.hpp>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace adaquant::onnx::detail {

// One entry per node plus one (before node k, k = 0 .. nodes; the last: after every node).
// Values without a known probe shape count 0; values without a sample axis count whole.
inline std::vector<std::size_t> live_elements(const graph& g) {
  const std::size_t n = g.nodes().size();
  std::vector<std::size_t> made_at, last_read;  // per value: [made, last read] in node order
  const auto grow = [&](int v) {
    const auto u = static_cast<std::size_t>(v);
    if (u >= made_at.size()) {
      made_at.resize(u + 1, graph::npos);
      last_read.resize(u + 1, 0);
    }
    return u;
  };
  for (const int v : g.input_values()) made_at[grow(v)] = 0;
  for (std::size_t i = 0; i < n; ++i) {
    for (const int v : g.at(i).inputs)
      if (v >= 0) last_read[grow(v)] = std::max(last_read[grow(v)], i);
    for (const int v : g.at(i).outputs)
      if (v >= 0 && made_at[grow(v)] == graph::npos) made_at[grow(v)] = i + 1;  // live before i+1
  }
  for (const int v : g.output_values()) last_read[grow(v)] = n;
  std::vector<long long> delta(n + 2, 0);
  for (std::size_t u = 0; u < made_at.size(); ++u) {
    const int v = static_cast<int>(u);
    if (made_at[u] == graph::npos || g.constant_value(v) || made_at[u] > last_read[u]) continue;
    const shape_t& s = g.probe_shape(v);
    if (s.empty()) continue;
    std::size_t e = 1;
    for (const std::int64_t d : s) e *= static_cast<std::size_t>(std::max<std::int64_t>(d, 0));
    if (g.per_sample(v) && g.probe_batch() > 0) e /= static_cast<std::size_t>(g.probe_batch());
    delta[made_at[u]] += static_cast<long long>(e);  // live before nodes made_at .. last_read
    delta[last_read[u] + 1] -= static_cast<long long>(e);
  }
  std::vector<std::size_t> live(n + 1);
  long long sum = 0;
  for (std::size_t k = 0; k <= n; ++k) live[k] = static_cast<std::size_t>(sum += delta[k]);
  return live;
}

}  // namespace adaquant::onnx::detail
