#pragma once
// adaquant: header-only post-training quantization (AdaQuant, integer-programming bit allocation,
// batch-norm tuning, bias correction). Adapters for std/Eigen/xtensor types are opt-in:
// #include <adaquant/adapters/eigen.hpp> etc.

#include <adaquant/version.hpp>

// Tensors, the error contract, how work runs (threads, progress, checkpoints).
#include <adaquant/core/checkpoint.hpp>
#include <adaquant/core/concepts.hpp>
#include <adaquant/core/error.hpp>
#include <adaquant/core/execution.hpp>
#include <adaquant/core/parallel.hpp>
#include <adaquant/core/tensor_shape.hpp>
#include <adaquant/core/tensor_traits.hpp>
#include <adaquant/core/tensor_view.hpp>

// Quantizers, kernels, range estimators.
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/kernels/fake_quant_backward.hpp>
#include <adaquant/kernels/quantize.hpp>
#include <adaquant/quant/int4.hpp>
#include <adaquant/quant/quant_params.hpp>
#include <adaquant/quant/quantizer.hpp>
#include <adaquant/quant/rounding.hpp>
#include <adaquant/quant/scheme.hpp>
#include <adaquant/range/estimator.hpp>
#include <adaquant/range/quantizer_spec.hpp>

// AdaQuant: layer objectives, Adam, calibration drivers.
#include <adaquant/calibrate/adaquant.hpp>
#include <adaquant/calibrate/driver.hpp>
#include <adaquant/objectives/layer_objective.hpp>
#include <adaquant/optim/adam.hpp>

// Bit allocation (integer program).
#include <adaquant/bitalloc/problem.hpp>
#include <adaquant/bitalloc/solver.hpp>

// Batch-norm tuning, bias correction, pipelines.
#include <adaquant/bias/bias_correction.hpp>
#include <adaquant/bias/bias_tuning.hpp>
#include <adaquant/bn/batch_norm.hpp>
#include <adaquant/bn/channel_moments.hpp>
#include <adaquant/bn/retune.hpp>
#include <adaquant/pipeline/advanced.hpp>
#include <adaquant/pipeline/light.hpp>
