#pragma once
// adaquant: header-only post-training quantization (AdaQuant, integer-programming bit allocation,
// batch-norm tuning, bias correction). Adapters for std/Eigen/xtensor types are opt-in:
// #include <adaquant/adapters/eigen.hpp> etc.

#include <adaquant/version.hpp>

#include <adaquant/core/concepts.hpp>
#include <adaquant/core/error.hpp>
#include <adaquant/core/tensor_shape.hpp>
#include <adaquant/core/tensor_traits.hpp>
#include <adaquant/core/tensor_view.hpp>

#include <adaquant/quant/int4.hpp>
#include <adaquant/quant/quant_params.hpp>
#include <adaquant/quant/quantizer.hpp>
#include <adaquant/quant/rounding.hpp>
#include <adaquant/quant/scheme.hpp>

#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/kernels/quantize.hpp>
