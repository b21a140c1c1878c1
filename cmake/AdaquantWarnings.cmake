# Warnings for adaquant's own targets only (never propagated to consumers).
function(adaquant_strict target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
endfunction()

# ADAQUANT_SANITIZE=ON builds our targets with AddressSanitizer + UndefinedBehaviorSanitizer, at
# -Og (it overrides the build type's level). Measured on tests/pipeline/test_pipeline.cpp: 56 s to
# compile against 109 s at -O1 and 42 s at -O0; the tests then run 1.2-1.4x slower than at -O1
# (at -O0: 4.5-7x). Reports name functions; add -g to CMAKE_CXX_FLAGS for line numbers.
option(ADAQUANT_SANITIZE "Build tests with ASan + UBSan" OFF)
if(ADAQUANT_SANITIZE)
  add_compile_options(-Og -fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
