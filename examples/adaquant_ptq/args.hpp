#pragma once
// adaquant_ptq's command line (args.cpp): its flags with their defaults and checks, and the
// usage text --help prints. The pipeline flags it shares with fashion_mnist_ptq are parsed and
// checked by adaquant_runtime/cli.hpp.

#include <adaquant_runtime/cli.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace adaquant_ptq {

namespace ex = adaquant::examples;

inline const ex::cli cli{"adaquant_ptq"};
constexpr const char* default_products_range = "mse";  // docs/text.md: the range study

struct args {
  std::string model, calib, test_data, test_labels, output, encodings, json, logits, checkpoint;
  std::optional<std::string> token_mask;      // unset: auto-detect; "": none
  int act_products = 0;                       // operand bits of the activation products; 0: off
  std::string act_products_range = default_products_range;
  std::vector<std::string> act_products_8bit;
  std::vector<std::int64_t> input_shape;
  std::size_t calib_count = 0, test_count = 0, loss_samples = 256, threads = 0, eval_batch = 16;
  int embedding_bits = 8;  // 0: embedding tables stay float
  ex::pipeline_settings settings{.pipeline = "advanced", .rounding = "onnx"};
  bool four_bit_types = true, int8_weights = false, fp32_only = false, quiet = false;
};

// The arguments after argv[0], checked; --help prints the usage and exits 0. Errors: ex::cli's
// (adaquant::error, errc::invalid_argument, "adaquant_ptq: <flag>: <reason>").
[[nodiscard]] args parse(int argc, char** argv);

}  // namespace adaquant_ptq
