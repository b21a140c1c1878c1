#pragma once
// adaquant::onnx: import ONNX CNNs into adaquant's pipelines (optional component, target
// adaquant::onnx; the core headers never include it). load.hpp parses and validates a file,
// graph.hpp runs it in float32 once compile.hpp has folded it and layers.hpp marked its layers,
// network.hpp adapts it to PipelineNetwork.
// See docs/onnx.md for the supported ops, the folding rules and the error contract.

#include <adaquant/onnx/graph.hpp>
#include <adaquant/onnx/load.hpp>
#include <adaquant/onnx/network.hpp>
#include <adaquant/onnx/tensor.hpp>
