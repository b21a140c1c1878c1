#pragma once
// adaquant_ptq's input data (inputs.cpp): the model's inputs, their samples read from .npy files
// (one file for a single-input model, else a folder with <input name>.npy per input), and the
// per-sample shapes the network is built for. Errors name the flag, the file and the input.

#include "args.hpp"

#include <adaquant/onnx/load.hpp>
#include <adaquant/onnx/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace adaquant_ptq {

namespace ax = adaquant::onnx;

// The model's inputs as the importer lists them, with their ONNX element type.
struct input_decl {
  std::string name;
  std::int32_t elem_type = 1;  // TensorProto::FLOAT
};
[[nodiscard]] std::vector<input_decl> model_inputs(const ax::model& m);

// A file a run read, and its SHA-256 (checkpoint identity, run report).
struct data_file {
  std::string path, sha256;
};

// Every model input's samples from `path` (`flag`: --calib or --test-data), the first `limit`
// when limit > 0; each file read is appended to `files`.
[[nodiscard]] std::vector<ax::tensor> read_inputs(const std::string& flag, const std::string& path,
                                                  const std::vector<input_decl>& decl,
                                                  std::vector<data_file>& files,
                                                  std::size_t limit = 0);

// Per-sample shapes: --input-shape (single input), else the model's declared shape when fully
// known, else the data's (`flag`'s: --calib, or --test-data with --fp32-only). Data that disagree
// with the chosen shape are an error naming the input.
[[nodiscard]] std::vector<ax::shape_t> sample_shapes(const args& a, const ax::model& m,
                                                     const std::vector<input_decl>& decl,
                                                     const std::vector<ax::tensor>& data,
                                                     const std::string& flag);

}  // namespace adaquant_ptq
