#include <adaquant/adapters/eigen.hpp>
#include <adaquant/adapters/std.hpp>
#include <adaquant/adapters/xtensor.hpp>
#include <adaquant/adaquant.hpp>

int odr_second() { return adaquant::version_major * 100 + adaquant::version_minor; }
