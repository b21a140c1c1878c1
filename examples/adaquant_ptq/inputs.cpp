// adaquant_ptq's input data (inputs.hpp).
#include "inputs.hpp"

#include "sha256.hpp"

#include <adaquant/core/error.hpp>
#include <adaquant_runtime/npy.hpp>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

namespace adaquant_ptq {

namespace aq = adaquant;
namespace fs = std::filesystem;

std::vector<input_decl> model_inputs(const ax::model& m) {
  std::vector<input_decl> out;
  for (const std::string& name : m.inputs) {
    input_decl d{name, 1};
    for (const auto& vi : m.graph().input())
      if (vi.name() == name && vi.type().has_tensor_type())
        d.elem_type = vi.type().tensor_type().elem_type();
    out.push_back(d);
  }
  return out;
}

namespace {
// Reads one model input's samples from FILE (single-input models) or DIR/<name>.npy.
ax::tensor read_input(const std::string& flag, const std::string& path, const input_decl& in,
                      std::size_t n_inputs, std::vector<data_file>& files) {
  fs::path file(path);
  std::error_code ec;
  if (fs::is_directory(file, ec)) {
    file /= in.name + ".npy";
    if (!fs::exists(file, ec))
      cli.fail(flag + ": " + path + " has no " + in.name + ".npy for model input '" + in.name +
               "'");
  } else if (n_inputs != 1) {
    cli.fail(flag + ": the model has " + std::to_string(n_inputs) +
             " inputs: give a folder with one <input name>.npy per input");
  }
  files.push_back({file.string(), ex::sha256_file(file)});
  const bool integer = in.elem_type == 7 || in.elem_type == 6;  // INT64, INT32
  const bool floating = in.elem_type == 1;
  if (!integer && !floating)
    cli.fail(flag + ": model input '" + in.name + "' has ONNX element type " +
             std::to_string(in.elem_type) + "; only float32 and int64/int32 inputs are read");
  ax::shape_t shape;
  ax::tensor t;
  if (floating) {
    ex::npy_array<float> a;
    try {
      a = ex::read_npy<float>(file);
    } catch (const aq::error& e) {
      throw aq::error(e.code(),
                      std::string(e.what()) + " (model input '" + in.name + "' is float32)");
    }
    for (std::size_t d : a.shape) shape.push_back(static_cast<std::int64_t>(d));
    t = ax::tensor(shape, std::move(a.values));
  } else {
    ex::npy_array<std::int64_t> a;
    try {
      a = ex::read_npy<std::int64_t>(file);
    } catch (const aq::error& e) {
      throw aq::error(e.code(), std::string(e.what()) + " (model input '" + in.name +
                                    "' takes int64 token ids)");
    }
    for (std::size_t d : a.shape) shape.push_back(static_cast<std::int64_t>(d));
    t = ax::tensor(static_cast<ax::dtype>(in.elem_type), shape, std::move(a.values));
  }
  if (t.shape.empty() || t.shape[0] == 0)
    throw aq::error(aq::errc::empty_input,
                    "adaquant_ptq: " + flag + ": " + file.string() + " holds no samples");
  return t;
}
}  // namespace

std::vector<ax::tensor> read_inputs(const std::string& flag, const std::string& path,
                                    const std::vector<input_decl>& decl,
                                    std::vector<data_file>& files, std::size_t limit) {
  std::vector<ax::tensor> out;
  for (const input_decl& in : decl) {
    ax::tensor t = read_input(flag, path, in, decl.size(), files);
    if (!out.empty() && t.shape[0] != out[0].shape[0])
      throw aq::error(aq::errc::shape_mismatch, "adaquant_ptq: " + flag + ": input '" + in.name +
                                                    "' has " + std::to_string(t.shape[0]) +
                                                    " samples, input '" + decl[0].name + "' has " +
                                                    std::to_string(out[0].shape[0]));
    out.push_back(std::move(t));
  }
  if (limit > 0) {
    if (limit > static_cast<std::size_t>(out[0].shape[0]))
      cli.fail(std::string(flag == std::string("--calib") ? "--calib-count" : "--test-count") +
               ": " + std::to_string(limit) + " is more than the " +
               std::to_string(out[0].shape[0]) + " samples of " + path);
    for (ax::tensor& t : out) t = t.items(0, limit);
  }
  return out;
}

std::vector<ax::shape_t> sample_shapes(const args& a, const ax::model& m,
                                       const std::vector<input_decl>& decl,
                                       const std::vector<ax::tensor>& data,
                                       const std::string& flag) {
  if (!a.input_shape.empty() && decl.size() != 1)
    cli.fail("--input-shape: the model has " + std::to_string(decl.size()) +
             " inputs; it applies to single-input models");
  std::vector<ax::shape_t> out;
  for (std::size_t k = 0; k < decl.size(); ++k) {
    const ax::shape_t item(data[k].shape.begin() + 1, data[k].shape.end());
    ax::shape_t want = item;
    std::string from = " (--input-shape)";
    if (!a.input_shape.empty()) {
      want = a.input_shape;
    } else {
      const ax::shape_t declared = m.declared_input_shape(k);
      if (declared.size() == item.size() + 1) {
        const ax::shape_t tail(declared.begin() + 1, declared.end());
        if (std::all_of(tail.begin(), tail.end(), [](std::int64_t d) { return d > 0; })) {
          want = tail;
          from = " (declared by " + a.model + ")";
        }
      }
    }
    if (want != item)
      throw aq::error(aq::errc::shape_mismatch,
                      "adaquant_ptq: " + flag + ": input '" + decl[k].name +
                          "' has per-sample shape " + ax::shape_string(item) +
                          ", the model input needs " + ax::shape_string(want) + from);
    out.push_back(want);
  }
  return out;
}

}  // namespace adaquant_ptq
