#pragma once
// execution_context: how work runs, apart from what it computes (as ruy keeps its Context apart
// from MulParams). Every setting here changes time and memory only, never a result: work is split
// per layer or per sample, each piece seeded by what it is, not by where it runs.
//
//   threads        0: every core. Range estimation runs this many layers at once, AdaQuant in
//                  parallel order at least this many, in sequential order a step's chunks of
//                  samples (adaquant_options::chunk_macs), captures split their samples.
//   capture_batch  calibration samples per capture call (the peak size of one capture).
//   progress       called with (step, done, total) as long steps advance, from the calling thread.
//   memory_limit   bytes the calibration caches may take (calibrate/memory.hpp checks it before
//                  any work); 0: the memory the system reports available (Linux MemAvailable),
//                  no check where it reports none.
//   checkpoint     where finished units of work are saved and, on a rerun, found instead of
//                  recomputed (core/checkpoint.hpp: the hook, its units and record format);
//                  nullptr: none. The result is bit-identical to an uninterrupted run.

#include <adaquant/core/checkpoint.hpp>

#include <cstddef>
#include <functional>
#include <string_view>

namespace adaquant {

// Progress of a long step: `done` of `total` units (layers, evaluations) of step `step`.
struct progress_event {
  std::string_view step;
  std::size_t done = 0, total = 0;
};

struct execution_context {
  std::size_t threads = 1;
  std::size_t capture_batch = 100;
  std::function<void(const progress_event&)> progress;
  std::size_t memory_limit = 0;
  checkpoint_store* checkpoint = nullptr;  // not owned

  void report(std::string_view step, std::size_t done, std::size_t total) const {
    if (progress) progress({step, done, total});
  }
};

}  // namespace adaquant
