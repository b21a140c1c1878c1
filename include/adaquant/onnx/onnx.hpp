#pragma once
// adaquant::onnx: import ONNX CNNs into adaquant's pipelines (optional component, target
// adaquant::onnx; the core headers never include it). load.hpp parses and validates a file,
// graph.hpp compiles and runs it in float32, network.hpp adapts it to PipelineNetwork.
// See docs/onnx.md for the supported ops, the folding rules and the error contract.

#include <adaquant/onnx/graph.hpp>
#include <adaquant/onnx/load.hpp>
#include <adaquant/onnx/network.hpp>
#include <adaquant/onnx/tensor.hpp>
