#include <catch2/catch.hpp>
#include "test_util.hpp"
