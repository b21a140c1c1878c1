# Warnings for adaquant's own targets only (never propagated to consumers).
function(adaquant_strict target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
endfunction()

# ADAQUANT_SANITIZE=ON builds our targets with AddressSanitizer + UndefinedBehaviorSanitizer, at
# -O1 (it overrides the build type's level): half the compile time of -O2 -g. Reports name
# functions; add -g to CMAKE_CXX_FLAGS for line numbers.
option(ADAQUANT_SANITIZE "Build tests with ASan + UBSan" OFF)
if(ADAQUANT_SANITIZE)
  add_compile_options(-O1 -fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
