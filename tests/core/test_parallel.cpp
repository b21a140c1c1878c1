#include <adaquant/core/error.hpp>
#include <adaquant/core/parallel.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

TEST_CASE("parallel_for runs every task exactly once for any thread count") {
  for (const std::size_t threads : {0u, 1u, 2u, 7u})
    for (const std::size_t tasks : {0u, 1u, 5u, 100u}) {
      std::vector<std::atomic<int>> runs(tasks);
      adaquant::parallel_for(tasks, threads, [&](std::size_t i) { ++runs[i]; });
      for (std::size_t i = 0; i < tasks; ++i) CHECK(runs[i] == 1);
    }
  CHECK(adaquant::resolve_threads(3) == 3);
  CHECK(adaquant::resolve_threads(0) >= 1);
}

TEST_CASE("parallel_for rethrows the failure of the lowest-numbered failed task") {
  // With one thread the tasks run in order, so task 3 fails first and 4.. never start.
  std::atomic<int> started{0};
  CHECK_THROWS_WITH(adaquant::parallel_for(10, 1,
                                           [&](std::size_t i) {
                                             ++started;
                                             if (i >= 3)
                                               throw std::runtime_error(std::to_string(i));
                                           }),
                    "3");
  CHECK(started == 4);
  CHECK_THROWS_WITH(adaquant::parallel_for(
                        2, 2, [](std::size_t i) { throw std::runtime_error(std::to_string(i)); }),
                    Catch::Matches("0|1"));
}

namespace {

// Destroyed after the pool (constructed before its first use): a call from a static destructor
// at exit runs as a plain loop instead of touching the joined pool.
struct call_at_exit {
  call_at_exit(const call_at_exit&) = delete;
  call_at_exit& operator=(const call_at_exit&) = delete;
  call_at_exit() = default;
  ~call_at_exit() {
    std::vector<int> runs(6, 0);
    adaquant::parallel_for(runs.size(), 3, [&](std::size_t i) { ++runs[i]; });
    if (std::count(runs.begin(), runs.end(), 1) != 6) std::abort();
  }
};
const call_at_exit at_exit;

// Each task once, checked after the call.
void check_once(std::size_t tasks, std::size_t threads) {
  std::vector<std::atomic<int>> runs(tasks);
  adaquant::parallel_for(tasks, threads, [&](std::size_t i) { ++runs[i]; });
  std::size_t once = 0;
  for (const std::atomic<int>& r : runs) once += r == 1;
  REQUIRE(once == tasks);
}

}  // namespace

TEST_CASE("parallel_for runs every task exactly once over many back-to-back calls") {
  for (std::size_t call = 0; call < 3000; ++call) check_once(1 + call % 41, 2 + call % 3);
  // Idle long enough for the workers to block, then woken.
  for (std::size_t call = 0; call < 5; ++call) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    check_once(64, 2);
  }
}

TEST_CASE("parallel_for's helpers take part while the caller is busy") {
  // Task 0 holds the caller until another thread has run a task: only a working pool frees it.
  std::atomic<bool> helped{false};
  const std::thread::id caller = std::this_thread::get_id();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  adaquant::parallel_for(2, 2, [&](std::size_t i) {
    if (std::this_thread::get_id() != caller) helped = true;
    if (i == 0)
      while (!helped && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  });
  CHECK(helped);
}

TEST_CASE("nested parallel_for calls complete and run every inner task once") {
  // Layers in parallel, each splitting its convolutions: three levels, more tasks than cores.
  for (const std::size_t threads : {2u, 3u, 8u}) {
    std::vector<std::atomic<int>> runs(6 * 7 * 9);
    adaquant::parallel_for(6, threads, [&](std::size_t a) {
      adaquant::parallel_for(7, threads, [&](std::size_t b) {
        adaquant::parallel_for(9, threads, [&](std::size_t c) { ++runs[(a * 7 + b) * 9 + c]; });
      });
    });
    for (const std::atomic<int>& r : runs) REQUIRE(r == 1);
  }
}

TEST_CASE("parallel_for from several unrelated threads at once") {
  constexpr std::size_t users = 4, calls = 300;
  std::vector<std::size_t> wrong(users, 0);
  std::vector<std::thread> pool;
  for (std::size_t u = 0; u < users; ++u)
    pool.emplace_back([&wrong, u] {
      for (std::size_t c = 0; c < calls; ++c) {
        const std::size_t tasks = 1 + (c + u) % 29;
        std::vector<std::atomic<int>> runs(tasks);
        adaquant::parallel_for(tasks, 2 + u % 2, [&](std::size_t i) {
          if (c % 10 == 0) adaquant::parallel_for(3, 2, [](std::size_t) {});
          ++runs[i];
        });
        for (const std::atomic<int>& r : runs) wrong[u] += r != 1;
      }
    });
  for (std::thread& t : pool) t.join();
  for (const std::size_t w : wrong) CHECK(w == 0);
}

TEST_CASE("parallel_for with threads rethrows the lowest-numbered failure after running tasks") {
  // Tasks 5.. throw: a claimed task always runs, so task 5 runs and fails whatever the thread
  // count, and at most one task per thread starts after the first failure.
  for (const std::size_t threads : {2u, 3u, 8u})
    for (int rep = 0; rep < 50; ++rep) {
      std::atomic<std::size_t> started{0};
      CHECK_THROWS_WITH(adaquant::parallel_for(100, threads,
                                               [&](std::size_t i) {
                                                 ++started;
                                                 if (i >= 5)
                                                   throw std::runtime_error(std::to_string(i));
                                               }),
                        "5");
      CHECK(started >= 6);
      CHECK(started <= 5 + threads);
    }
  // The rethrow waits for a task still running on another thread.
  std::atomic<bool> finished{false};
  CHECK_THROWS(adaquant::parallel_for(2, 2, [&](std::size_t i) {
    if (i == 1) throw std::runtime_error("1");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    finished = true;
  }));
  CHECK(finished);
  check_once(50, 2);  // the pool still works after failures
}

TEST_CASE("a reduction by task gives the same bits on any thread count") {
  // Fixed decomposition: task t sums its own chunk in order, the caller adds the parts in task
  // order, as the chunked gradient does.
  std::vector<float> x(10007);
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.4f;
  const auto reduce = [&](std::size_t threads) {
    constexpr std::size_t parts = 37;
    std::vector<float> part(parts, 0.0f);
    adaquant::parallel_for(parts, threads, [&](std::size_t t) {
      for (std::size_t i = t * x.size() / parts; i < (t + 1) * x.size() / parts; ++i)
        part[t] += x[i] * x[i];
    });
    float sum = 0.0f;
    for (const float p : part) sum += p;
    return sum;
  };
  const float one = reduce(1);
  for (const std::size_t threads : {0u, 2u, 3u, 8u})
    for (int rep = 0; rep < 20; ++rep) REQUIRE(reduce(threads) == one);
}
