#pragma once

#define ADAQUANT_VERSION_MAJOR 0
#define ADAQUANT_VERSION_MINOR 1
#define ADAQUANT_VERSION_PATCH 0

namespace adaquant {
inline constexpr int version_major = ADAQUANT_VERSION_MAJOR;
inline constexpr int version_minor = ADAQUANT_VERSION_MINOR;
inline constexpr int version_patch = ADAQUANT_VERSION_PATCH;
}  // namespace adaquant
