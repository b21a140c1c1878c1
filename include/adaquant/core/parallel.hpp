#pragma once
// parallel_for(tasks, threads, f): f(0), ..., f(tasks - 1), each exactly once, on up to `threads`
// threads (0: std::thread::hardware_concurrency()); the calling thread takes part. Used where
// work is independent per task (per layer, per batch part, per convolution unit), so results
// never depend on the thread count or on which thread ran a task. When tasks throw, the remaining
// unstarted tasks are skipped and the exception of the lowest-numbered failed task is rethrown
// after every thread working on the call has finished. threads <= 1 or tasks <= 1: a plain loop.
//
// Pool. The helper threads persist: one process-wide pool, started on first use and grown to the
// largest `threads - 1` asked for, so a call costs a lock and a wake-up, not thread starts (the
// direct convolution calls it several times per AdaQuant step). A call posts a job (its task
// counter on the caller's stack), wakes up to `threads - 1` idle workers and drains its own
// tasks; workers join while unstarted tasks are left. The caller then closes the job to newcomers
// and waits only for tasks already running elsewhere, never for an unstarted one.
// Nesting: a task may call parallel_for (layers in parallel, each splitting its convolutions).
// The inner call is an ordinary job: idle workers help, and if none is idle its caller runs every
// task itself. A waiting thread runs no other job's tasks, so a wait never closes a cycle and
// nested or concurrent calls from unrelated threads cannot deadlock.
// Wake-up: an idle worker spins for about pool_spin (back-to-back calls find it awake), then
// blocks on a condition variable; a waiting caller likewise spins, then blocks.
// Exit: the pool is a function-local static whose destructor joins the workers; a call made after
// it was destroyed (from a later static destructor) runs as a plain loop.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

namespace adaquant {

[[nodiscard]] inline std::size_t resolve_threads(std::size_t threads) noexcept {
  return threads ? threads : std::max(1u, std::thread::hardware_concurrency());
}

namespace detail {

// How long an idle worker, or a caller waiting for its helpers, polls before blocking.
inline constexpr std::chrono::microseconds pool_spin{50};
// Elements per thread below which an element-wise pass the size of a layer's weights (Adam's
// update, weight fake quantization and its backward, weight packing and transposition) stays on
// one thread: handing it to the pool would cost about as much as it saves.
inline constexpr std::size_t parallel_min_elements = std::size_t{1} << 16;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls done() for up to pool_spin; true once it holds.
template <class Done>
[[nodiscard]] bool spin_until(Done done) {
  const auto until = std::chrono::steady_clock::now() + pool_spin;
  for (;;) {
    for (int k = 0; k < 64; ++k, cpu_relax())
      if (done()) return true;
    if (std::chrono::steady_clock::now() >= until) return done();
  }
}

// One parallel_for call. Lives on the caller's stack; workers touch it only while counted in
// `active`.
struct pool_job {
  std::size_t tasks = 0;
  std::size_t helpers_max = 0;  // threads - 1
  void (*run)(void*, std::size_t) = nullptr;
  void* fn = nullptr;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::size_t helpers = 0;             // workers that joined (under the pool's mutex)
  std::atomic<std::size_t> active{0};  // workers inside (changed under the pool's mutex)
  std::mutex error_mutex;
  std::size_t error_task = std::numeric_limits<std::size_t>::max();
  std::exception_ptr error;

  [[nodiscard]] bool open() const noexcept { return !failed && next < tasks; }

  void drain() noexcept {
    for (std::size_t i; !failed && (i = next.fetch_add(1)) < tasks;) {
      try {
        run(fn, i);
      } catch (...) {
        const std::lock_guard lock(error_mutex);
        if (i < error_task) {
          error_task = i;
          error = std::current_exception();
        }
        failed = true;
      }
    }
  }
};

class thread_pool {
 public:
  thread_pool() = default;
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  ~thread_pool() {
    closed() = true;
    {
      const std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) {
      if (t.get_id() == std::this_thread::get_id())
        t.detach();  // exit() from inside a task
      else
        t.join();
    }
  }

  // Set for good once the pool is destroyed; a trivially destructible flag outlives it.
  [[nodiscard]] static std::atomic<bool>& closed() noexcept {
    static std::atomic<bool> flag{false};
    return flag;
  }

  static thread_pool& instance() {
    static thread_pool pool;
    return pool;
  }

  void run(pool_job& job) {
    std::size_t wake = 0;
    {
      const std::lock_guard lock(mutex_);
      grow(job.helpers_max);
      jobs_.push_back(&job);
      posted_.fetch_add(1, std::memory_order_relaxed);
      // Spinning workers see the job unaided; wake sleepers only for the rest.
      wake = std::min(sleeping_, job.helpers_max - std::min(spinning_, job.helpers_max));
    }
    for (std::size_t k = 0; k < wake; ++k) wake_.notify_one();
    job.drain();
    std::unique_lock lock(mutex_);
    jobs_.erase(std::find(jobs_.begin(), jobs_.end(), &job));  // no worker joins from here on
    if (job.active == 0) return;
    lock.unlock();
    if (spin_until([&] { return job.active == 0; })) return;
    lock.lock();
    done_.wait(lock, [&] { return job.active == 0; });
  }

 private:
  // Starts workers up to `helpers`; with fewer (the system refused a thread) calls still finish,
  // their callers running more of the tasks.
  void grow(std::size_t helpers) {
    try {
      while (workers_.size() < helpers) workers_.emplace_back([this] { work(); });
    } catch (const std::system_error&) {
    }
  }

  [[nodiscard]] pool_job* pick() const noexcept {
    for (pool_job* j : jobs_)
      if (j->helpers < j->helpers_max && j->open()) return j;
    return nullptr;
  }

  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (pool_job* j = pick()) {
        ++j->helpers;
        ++j->active;
        lock.unlock();
        j->drain();
        lock.lock();
        if (--j->active == 0) done_.notify_all();
        continue;
      }
      if (stop_) return;
      const std::size_t seen = posted_.load(std::memory_order_relaxed);
      ++spinning_;
      lock.unlock();
      const bool posted =
          spin_until([&] { return posted_.load(std::memory_order_relaxed) != seen; });
      lock.lock();
      --spinning_;
      if (posted) continue;
      ++sleeping_;
      wake_.wait(lock, [&] { return stop_ || posted_.load(std::memory_order_relaxed) != seen; });
      --sleeping_;
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<pool_job*> jobs_;  // open calls, oldest first
  std::vector<std::thread> workers_;
  std::atomic<std::size_t> posted_{0};  // jobs ever posted: what a spinning worker watches
  std::size_t spinning_ = 0, sleeping_ = 0;
  bool stop_ = false;
};

}  // namespace detail

template <class F>
void parallel_for(std::size_t tasks, std::size_t threads, F&& f) {
  threads = std::min(resolve_threads(threads), tasks);
  if (threads <= 1 || detail::thread_pool::closed()) {
    for (std::size_t i = 0; i < tasks; ++i) f(i);
    return;
  }
  using fn_type = std::remove_reference_t<F>;
  detail::pool_job job;
  job.tasks = tasks;
  job.helpers_max = threads - 1;
  job.fn = const_cast<void*>(static_cast<const void*>(std::addressof(f)));
  job.run = [](void* fn, std::size_t i) { (*static_cast<fn_type*>(fn))(i); };
  detail::thread_pool::instance().run(job);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace adaquant
