#pragma once
// f() must throw adaquant::error with `code` and a message that contains `text`.

#include <adaquant/core/error.hpp>

#include <catch2/catch.hpp>

#include <string>

namespace adaquant_test {

template <class F>
void expect_error(F&& f, adaquant::errc code, const std::string& text) {
  try {
    f();
    FAIL("expected an error containing \"" << text << "\"");
  } catch (const adaquant::error& e) {
    CHECK(e.code() == code);
    CHECK_THAT(e.what(), Catch::Contains(text));
  }
}

}  // namespace adaquant_test
