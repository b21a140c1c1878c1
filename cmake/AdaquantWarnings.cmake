# Warnings for adaquant's own targets only (never propagated to consumers).
function(adaquant_strict target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
endfunction()

# ADAQUANT_SANITIZE=ON builds our targets with AddressSanitizer + UndefinedBehaviorSanitizer.
option(ADAQUANT_SANITIZE "Build tests with ASan + UBSan" OFF)
if(ADAQUANT_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
