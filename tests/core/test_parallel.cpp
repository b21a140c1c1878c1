#include <adaquant/core/error.hpp>
#include <adaquant/core/parallel.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <string>
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
                                             if (i >= 3) throw std::runtime_error(std::to_string(i));
                                           }),
                    "3");
  CHECK(started == 4);
  CHECK_THROWS_WITH(adaquant::parallel_for(
                        2, 2, [](std::size_t i) { throw std::runtime_error(std::to_string(i)); }),
                    Catch::Matches("0|1"));
}
