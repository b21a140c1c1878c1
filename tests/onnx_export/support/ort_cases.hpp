#pragma once
// With ADAQUANT_ORT_CASES=<dir> set, the tests leave each exported model there with its inputs
// and the reference interpreter's outputs (raw float32 files + <case>.json), for
// tools/ort/check_qdq.js to run through ONNX Runtime. Without it these do nothing.

#include "reference_eval.hpp"

#include <onnx/onnx_pb.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace test_onnx {

inline const char* ort_cases_dir() { return std::getenv("ADAQUANT_ORT_CASES"); }

inline void write_floats(const std::filesystem::path& p, const std::vector<float>& v) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
}

inline std::string shape_json(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Writes each tensor to <name>.<kind>.<tensor>.bin; returns their JSON object.
inline std::string tensor_files(const std::filesystem::path& dir, const std::string& name,
                                const std::string& kind, const std::map<std::string, value>& tensors) {
  std::string json = "{";
  for (const auto& [k, v] : tensors) {
    const std::string file = name + "." + kind + "." + k + ".bin";
    write_floats(dir / file, v.f);
    json += std::string(json.size() > 1 ? ", " : "") + "\"" + k + "\": {\"shape\": " +
            shape_json(v.shape) + ", \"file\": \"" + file + "\"}";
  }
  return json + "}";
}

// Graph outputs are added for every tensor in `outputs` the model does not output yet.
inline void write_ort_case(onnx::ModelProto m, const std::string& name,
                           const std::map<std::string, value>& inputs,
                           const std::map<std::string, value>& outputs) {
  const char* dir_env = ort_cases_dir();
  if (!dir_env) return;
  const std::filesystem::path dir(dir_env);
  std::filesystem::create_directories(dir);
  auto& g = *m.mutable_graph();
  for (const auto& [k, v] : outputs) {
    bool present = false;
    for (const auto& o : g.output()) present |= o.name() == k;
    if (!present) {
      auto* o = g.add_output();
      o->set_name(k);
      o->mutable_type()->mutable_tensor_type()->set_elem_type(1);
    }
  }
  std::ofstream(dir / (name + ".onnx"), std::ios::binary) << m.SerializeAsString();
  std::ofstream(dir / (name + ".json")) << "{\"model\": \"" + name + ".onnx\", \"inputs\": " +
                                               tensor_files(dir, name, "in", inputs) + ", \"outputs\": " +
                                               tensor_files(dir, name, "out", outputs) + "}\n";
}

// A case whose expected outputs are what ONNX Runtime computes with `reference` on the same inputs.
inline void write_ort_pair(const onnx::ModelProto& m, const onnx::ModelProto& reference,
                           const std::string& name, const std::map<std::string, value>& inputs) {
  const char* dir_env = ort_cases_dir();
  if (!dir_env) return;
  const std::filesystem::path dir(dir_env);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / (name + ".onnx"), std::ios::binary) << m.SerializeAsString();
  std::ofstream(dir / (name + ".reference.onnx"), std::ios::binary) << reference.SerializeAsString();
  std::ofstream(dir / (name + ".json")) << "{\"model\": \"" + name + ".onnx\", \"compare_with\": \"" +
                                               name + ".reference.onnx\", \"inputs\": " +
                                               tensor_files(dir, name, "in", inputs) + "}\n";
}

inline void report_size(const std::string& what, std::size_t bytes) {
  if (ort_cases_dir()) std::printf("model size %s: %zu bytes\n", what.c_str(), bytes);
}

}  // namespace test_onnx
