#pragma once
// parallel_for(tasks, threads, f): f(0), ..., f(tasks - 1), each exactly once, on up to `threads`
// std::threads (0: std::thread::hardware_concurrency()); the calling thread takes part. Used
// where work is independent per task (per layer, per batch part), so results never depend on
// the thread count. When tasks throw, the remaining unstarted tasks are skipped and the exception
// of the lowest-numbered failed task is rethrown after every thread has finished.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace adaquant {

[[nodiscard]] inline std::size_t resolve_threads(std::size_t threads) noexcept {
  return threads ? threads : std::max(1u, std::thread::hardware_concurrency());
}

template <class F>
void parallel_for(std::size_t tasks, std::size_t threads, F&& f) {
  threads = std::min(resolve_threads(threads), tasks);
  std::vector<std::exception_ptr> errors(tasks);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  auto work = [&] {
    for (std::size_t i; !failed && (i = next.fetch_add(1)) < tasks;) {
      try {
        f(i);
      } catch (...) {
        errors[i] = std::current_exception();
        failed = true;
      }
    }
  };
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace adaquant
