#pragma once
// Top-1 accuracy and mean softmax cross-entropy of a network over a labelled image set.
// Images are processed in fixed chunks of `batch`; worker threads take whole chunks and every
// image is computed independently, so the numbers are identical for any thread count. Hooks
// installed on the network are called from the worker threads: use threads = 1 for hooks that
// are not thread-safe (captures, observers).

#include <adaquant_runtime/idx.hpp>
#include <adaquant_runtime/network.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace adaquant::examples {

struct eval_options {
  std::size_t batch = 100;
  std::size_t threads = 0;  // 0: std::thread::hardware_concurrency()
  std::size_t limit = 0;    // evaluate only the first `limit` images (0: all)
  std::function<void(std::size_t done, std::size_t total)> progress;  // from the calling thread
};

struct eval_result {
  std::size_t images = 0, correct = 0;
  double accuracy = 0.0, mean_cross_entropy = 0.0;
  std::vector<std::uint8_t> predictions;  // argmax per image (first maximum on ties)
};

[[nodiscard]] eval_result evaluate(const network& net, const image_dataset& data,
                                   const normalisation& norm, const eval_options& opt = {});

// A progress callback that redraws "label: done/total (pct%)" on stderr.
[[nodiscard]] std::function<void(std::size_t, std::size_t)> stderr_progress(std::string label);

}  // namespace adaquant::examples
