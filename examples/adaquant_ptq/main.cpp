// adaquant_ptq: quantize any ONNX CNN with the naive, light or advanced pipeline and write a QDQ
// ONNX model (plus, optionally, an encodings JSON and a run report). `adaquant_ptq --help` prints
// the usage with every default. Bad input (unknown or unsupported op, malformed file, calibration
// data that does not fit the model input, bits out of range, infeasible budget, unwritable output)
// exits 2 with a one-line error and writes nothing; outputs are written only at the end, each
// atomically (temporary file, fsync, rename). --checkpoint DIR saves each finished unit of work,
// so a killed run resumes where it stopped (adaquant_runtime/checkpoint_dir.hpp).
#include "sha256.hpp"

#include <adaquant/calibrate/memory.hpp>
#include <adaquant/onnx/encodings.hpp>
#include <adaquant/onnx/export.hpp>
#include <adaquant/onnx/network.hpp>
#include <adaquant_runtime/checkpoint_dir.hpp>
#include <adaquant_runtime/cli.hpp>
#include <adaquant_runtime/npy.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace aq = adaquant;
namespace ax = adaquant::onnx;
namespace ex = adaquant::examples;
namespace fs = std::filesystem;

namespace {

constexpr const char* usage =
    R"(usage: adaquant_ptq --model IN.onnx --calib FILE|DIR --output OUT.onnx [options]

Quantizes an ONNX model with adaquant's pipelines and writes a QDQ ONNX model that ONNX Runtime
runs (weights as int8 / packed int4 initializers with DequantizeLinear per output channel, layer
inputs through QuantizeLinear/DequantizeLinear with the calibrated parameters).

inputs
  --model FILE           the ONNX model (opset 9-21, self-contained: external data is refused)
  --calib FILE|DIR       calibration inputs as NumPy .npy (float32, or int64 for token ids; first
                         axis = samples): one file for a single-input model, or a directory with
                         one <input name>.npy per model input
  --calib-count N        use the first N calibration samples               [all]
  --input-shape D,D,...  per-sample shape of the model input (without the sample axis) [from the
                         model's declared shape, else from the calibration data]
  --test-data FILE|DIR   test inputs, same format as --calib: report FP32 and quantized top-1
  --test-labels FILE     int64 .npy, one label per test sample (needed with --test-data)
  --test-count N         use the first N test samples                      [all]
  --token-mask NAME      the model input marking padding tokens (integer [N, T], 0 = padding):
                         padding counts nowhere in calibration of the MatMuls on [N, T, K]
                         activations; none = no mask        [the input named like attention_mask]

what to compute
  --pipeline P           naive | light | advanced                          [advanced]
                           naive: round-to-nearest, min/max ranges, every layer at the bits
                           light: MSE ranges, first/last layer 8-bit, [bit allocation], BN
                                  tuning, bias correction
                           advanced: AdaQuant, first/last layer 8-bit, [bit allocation], BN
                                  tuning, bias tuning
  --wbits N              weight bits, 2-16 (per output channel, symmetric)  [4]
  --abits N              activation bits, 2-16 (per tensor, affine)         [4]
  --weight-only          activations stay float (no input quantizer; takes no --abits or
                         --act-range)
  --weight-granularity G channel | block:N: weights per output channel, or per block of N
                         inputs (linear and 1x1 conv layers; exported as blocked
                         DequantizeLinear, opset 21)                        [channel]
  --all-layers           quantize the first and last layer at --wbits/--abits too
  --8bit-layers LIST     comma-separated parts of node names: the layers whose ONNX node name
                         contains one stay at 8 bits (to find what a bit-width hurts)  [none]
  --embedding-bits B     embedding tables (a Gather of a constant [V, D] initializer) per row at
                         B bits, 2-8, round-to-nearest with the --weight-range estimator,
                         exported as DequantizeLinear(axis 0) before the Gather; none or 0 =
                         float                                              [8]
  --act-products         input quantizers on both operands of the products of two activations
                         (attention's Q K^T and softmax V: MatMuls without a weight), per
                         tensor at --abits, ranges estimated on the quantized network with
                         padding masked (docs/text.md)                      [off]
  --act-products-bits N  the same at N bits, 2-16
  --act-products-range M min_max | percentile | mse: the operands' ranges   [mse]
  --act-products-8bit LIST  comma-separated ends of product node names kept at 8 bits  [none]
  --weight-range M       min_max | percentile | mse                        [mse; naive: min_max]
  --act-range M          min_max | percentile | mse                        [mse; naive: min_max]
  --percentile P         the percentile of --*-range percentile            [99.99]
  --rounding R           onnx | pytorch: how the simulation rounds          [onnx]
                           onnx divides by the scale as QuantizeLinear does, so the exported
                           model computes what was simulated; pytorch multiplies by 1/scale
                           (can differ by one step near ties)
  --max-size-ratio R     bit allocation: weights at most R of FP32, 0 < R <= 1  [off]
  --bit-options LIST     weight bits bit allocation chooses from           [2,3,4,8]
  --bit-rounds N         bit allocation: loss tables measured, each around the previous
                         round's choice (1 = the paper's one-shot table)   [4]
  --loss-samples N       calibration samples of bit allocation's loss      [256]
  --iterations N         AdaQuant iterations per layer                     [1000]
  --order O              sequential | parallel AdaQuant                    [sequential]
  --seed N               AdaQuant's seed                                   [0]
  --qdrop P              AdaQuant's QDrop: each input element keeps its float value with
                         probability P in [0, 1] while optimising       [by bits: docs/lowbit.md]
  --lr-weight R          AdaQuant's relative rate of the weight offsets    [2e-3]
  --lr-quant R           AdaQuant's relative rate of the quantizer scales  [1e-3]
  --weight-rounding M    learned_step | adaround: how AdaQuant learns the weights
                         (AdaRound: learned up/down rounding)          [by bits: docs/lowbit.md]
  --adaround-lambda L    AdaRound's regulariser weight, >= 0               [0.01]
  --no-bn-tuning         skip BN tuning
  --bn-target T          running | fp: BN tuning's reference statistics    [running]
  --no-bias              skip bias correction (light) / bias tuning (advanced)

outputs
  --output FILE          the quantized QDQ ONNX model (required)
  --encodings FILE       per-tensor encodings JSON (bits, signedness, scales, zero points, axis)
  --json FILE            run report: model and data files with SHA-256, every setting, top-1,
                         sizes, per-layer bits, step times
  --logits FILE          the simulated quantized model's first output on the test data, as a
                         float32 .npy (to compare with ONNX Runtime's run of the exported model)
  --no-4bit-types        store 2-4-bit grids in 8-bit types (opset 13) instead of int4/uint4
                         (opset 21)
  --int8-weights         store signed 5-8-bit weights as INT8 instead of UINT8 + 128 (the same
                         values; ONNX Runtime's fused int8-weight convolutions saturate on x86
                         without VNNI, so UINT8 is the default that computes what was simulated)

execution
  --threads N            0 = every core; results do not depend on it      [0]
  --checkpoint DIR       save each finished unit of work (a layer's result, bit allocation's
                         losses) in DIR, created if missing; a rerun with the same arguments,
                         model and data resumes after the last unit saved, with the same result
                         (any --threads); a DIR from other arguments, model or data is refused
  --eval-batch N         test samples per evaluation chunk                 [16]
  --fp32-only            only evaluate the FP32 model on --test-data (no --calib or --output):
                         top-1 and evaluation seconds (with --json: fp32_eval_seconds)
  --quiet                no progress on stderr
  --help                 this text
)";

const ex::cli cli{"adaquant_ptq"};
constexpr const char* default_products_range = "mse";  // docs/text.md: the range study

// Comma-separated non-empty parts.
std::vector<std::string> name_parts(const std::string& flag, const std::string& v) {
  std::vector<std::string> out;
  for (std::size_t b = 0; b <= v.size();) {
    const std::size_t e = std::min(v.find(',', b), v.size());
    if (e == b) cli.fail(flag + ": empty name part in '" + v + "'");
    out.push_back(v.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

struct args {
  std::string model, calib, test_data, test_labels, output, encodings, json, logits, checkpoint;
  std::optional<std::string> token_mask;      // unset: auto-detect; "": none
  std::vector<std::string> eight_bit_layers;  // --8bit-layers
  int act_products = 0;                       // operand bits of the activation products; 0: off
  std::string act_products_range = default_products_range;
  std::vector<std::string> act_products_8bit;
  std::vector<std::int64_t> input_shape;
  std::size_t calib_count = 0, test_count = 0, loss_samples = 256, threads = 0, eval_batch = 16;
  int embedding_bits = 8;  // 0: embedding tables stay float
  ex::pipeline_settings settings{.pipeline = "advanced", .rounding = "onnx"};
  bool four_bit_types = true, int8_weights = false, fp32_only = false, quiet = false;
};

args parse(int argc, char** argv) {
  args a;
  ex::pipeline_settings& s = a.settings;
  bool act_flags = false;       // --abits or --act-range given
  bool products_flags = false;  // --act-products-range or --act-products-8bit given
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) cli.fail(f + " needs a value");
      return argv[++i];
    };
    if (f == "--help" || f == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    } else if (f == "--model")
      a.model = value();
    else if (f == "--calib")
      a.calib = value();
    else if (f == "--calib-count")
      a.calib_count = cli.to_count(f, value());
    else if (f == "--input-shape") {
      for (long long d : cli.to_list(f, value())) {
        if (d <= 0) cli.fail("--input-shape: extents must be > 0");
        a.input_shape.push_back(d);
      }
    } else if (f == "--test-data")
      a.test_data = value();
    else if (f == "--test-labels")
      a.test_labels = value();
    else if (f == "--test-count")
      a.test_count = cli.to_count(f, value());
    else if (f == "--token-mask") {
      a.token_mask = value();
      if (*a.token_mask == "none")
        a.token_mask = "";
      else if (a.token_mask->empty())
        cli.fail("--token-mask needs an input name or none");
    } else if (f == "--pipeline")
      s.pipeline = value();
    else if (f == "--wbits")
      s.wbits = static_cast<int>(cli.to_int(f, value()));
    else if (f == "--abits") {
      s.abits = static_cast<int>(cli.to_int(f, value()));
      act_flags = true;
    } else if (f == "--weight-only")
      s.weight_only = true;
    else if (f == "--weight-granularity")
      s.weight_block = cli.to_weight_block(f, value());
    else if (f == "--all-layers")
      s.all_layers = true;
    else if (f == "--8bit-layers")
      a.eight_bit_layers = name_parts(f, value());
    else if (f == "--act-products")
      a.act_products = a.act_products ? a.act_products : -1;
    else if (f == "--act-products-bits") {
      a.act_products = static_cast<int>(cli.to_int(f, value()));
      if (a.act_products < 2 || a.act_products > 16)
        cli.fail("--act-products-bits: must be in [2, 16], got " + std::to_string(a.act_products));
    } else if (f == "--act-products-range") {
      a.act_products_range = value();
      products_flags = true;
    } else if (f == "--act-products-8bit") {
      a.act_products_8bit = name_parts(f, value());
      products_flags = true;
    } else if (f == "--embedding-bits") {
      const std::string v = value();
      a.embedding_bits = v == "none" ? 0 : static_cast<int>(cli.to_int(f, v));
      if (a.embedding_bits != 0 && (a.embedding_bits < 2 || a.embedding_bits > 8))
        cli.fail("--embedding-bits: must be none (0, float) or in [2, 8], got " + v);
    } else if (f == "--weight-range")
      s.weight_range = value();
    else if (f == "--act-range") {
      s.act_range = value();
      act_flags = true;
    } else if (f == "--percentile")
      s.percentile = cli.to_double(f, value());
    else if (f == "--rounding")
      s.rounding = value();
    else if (f == "--max-size-ratio")
      s.max_size_ratio = cli.to_double(f, value());
    else if (f == "--bit-options") {
      s.bit_options.clear();
      for (long long b : cli.to_list(f, value())) s.bit_options.push_back(static_cast<int>(b));
    } else if (f == "--bit-rounds")
      s.bit_rounds = static_cast<int>(cli.to_int(f, value()));
    else if (f == "--loss-samples")
      a.loss_samples = cli.to_count(f, value());
    else if (f == "--iterations")
      s.iterations = cli.to_count(f, value());
    else if (f == "--order")
      s.order = value();
    else if (f == "--qdrop")
      s.qdrop = cli.to_double(f, value());
    else if (f == "--lr-weight")
      s.lr_weight = cli.to_double(f, value());
    else if (f == "--lr-quant")
      s.lr_quant = cli.to_double(f, value());
    else if (f == "--weight-rounding")
      s.weight_rounding = value();
    else if (f == "--adaround-lambda")
      s.adaround_lambda = cli.to_double(f, value());
    else if (f == "--seed")
      s.seed = static_cast<std::uint64_t>(cli.to_count(f, value()));
    else if (f == "--no-bn-tuning")
      s.bn_tuning = false;
    else if (f == "--bn-target")
      s.bn_target = value();
    else if (f == "--no-bias")
      s.bias = false;
    else if (f == "--output")
      a.output = value();
    else if (f == "--encodings")
      a.encodings = value();
    else if (f == "--json")
      a.json = value();
    else if (f == "--logits")
      a.logits = value();
    else if (f == "--no-4bit-types")
      a.four_bit_types = false;
    else if (f == "--int8-weights")
      a.int8_weights = true;
    else if (f == "--fp32-only")
      a.fp32_only = true;
    else if (f == "--eval-batch")
      a.eval_batch = cli.to_count(f, value());
    else if (f == "--threads")
      a.threads = cli.to_count(f, value());
    else if (f == "--checkpoint")
      a.checkpoint = value();
    else if (f == "--quiet")
      a.quiet = true;
    else
      cli.fail("unknown argument '" + f + "' (see --help)");
  }
  if (s.weight_only && act_flags)
    cli.fail("--weight-only: activations stay float; --abits and --act-range do not apply");
  if (s.weight_only && a.act_products)
    cli.fail("--weight-only: activations stay float; --act-products does not apply");
  if (products_flags && !a.act_products)
    cli.fail(
        "--act-products-range and --act-products-8bit need --act-products or --act-products-bits");
  cli.one_of("--act-products-range", a.act_products_range, {"min_max", "percentile", "mse"});
  if (a.act_products < 0) a.act_products = s.abits;
  if (a.model.empty()) cli.fail("--model is required (see --help)");
  if (a.fp32_only) {
    if (a.test_data.empty()) cli.fail("--fp32-only needs --test-data and --test-labels");
    if (!a.calib.empty() || !a.output.empty() || !a.encodings.empty() || !a.logits.empty() ||
        !a.checkpoint.empty())
      cli.fail("--fp32-only takes no --calib, --output, --encodings, --logits or --checkpoint");
  } else {
    if (a.calib.empty()) cli.fail("--calib is required");
    if (a.output.empty()) cli.fail("--output is required");
  }
  if (a.eval_batch == 0) cli.fail("--eval-batch: must be > 0");
  if (a.test_data.empty() != a.test_labels.empty())
    cli.fail("--test-data and --test-labels go together");
  if (!a.logits.empty() && a.test_data.empty()) cli.fail("--logits needs --test-data");
  cli.one_of("--pipeline", s.pipeline, {"naive", "light", "advanced"});
  cli.one_of("--order", s.order, {"sequential", "parallel"});
  cli.one_of("--bn-target", s.bn_target, {"running", "fp"});
  cli.one_of("--rounding", s.rounding, {"onnx", "pytorch"});
  // Empty ranges are the pipeline's default (mse; naive: min_max).
  if (!s.weight_range.empty())
    cli.one_of("--weight-range", s.weight_range, {"min_max", "percentile", "mse"});
  if (!s.act_range.empty())
    cli.one_of("--act-range", s.act_range, {"min_max", "percentile", "mse"});
  for (const auto& [flag, b] : {std::pair{"--wbits", s.wbits}, std::pair{"--abits", s.abits}})
    if (b < 2 || b > 16)
      cli.fail(std::string(flag) + ": must be in [2, 16], got " + std::to_string(b));
  for (int b : s.bit_options)
    if (b < 2 || b > 16)
      cli.fail("--bit-options: bits must be in [2, 16], got " + std::to_string(b));
  if (s.max_size_ratio && !(*s.max_size_ratio > 0.0 && *s.max_size_ratio <= 1.0))
    cli.fail("--max-size-ratio: must be in (0, 1]");
  if (!(s.percentile > 0.0 && s.percentile <= 100.0)) cli.fail("--percentile: must be in (0, 100]");
  if (s.iterations == 0) cli.fail("--iterations: must be > 0");
  ex::check_adaquant_settings(cli, s);
  if (a.loss_samples == 0) cli.fail("--loss-samples: must be > 0");
  if (s.bit_rounds < 1) cli.fail("--bit-rounds: must be >= 1");
  return a;
}

// The model's inputs as the importer lists them, with their ONNX element type.
struct input_decl {
  std::string name;
  std::int32_t elem_type = 1;  // TensorProto::FLOAT
};
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

struct data_file {
  std::string path, sha256;
};

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

std::vector<ax::tensor> read_inputs(const std::string& flag, const std::string& path,
                                    const std::vector<input_decl>& decl,
                                    std::vector<data_file>& files, std::size_t limit = 0) {
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

// Per-sample shapes: --input-shape (single input), else the model's declared shape when fully
// known, else the data's (`flag`'s: --calib, or --test-data with --fp32-only). Data that disagree
// with the chosen shape are an error naming the input.
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

// Conv / Gemm / MatMul nodes that are not quantizable layers, counted by op type and reason.
// Why the Conv/Gemm/MatMul nodes that are neither layers nor quantized products stay float.
std::map<std::string, std::size_t> float_nodes(const ax::onnx_network& net) {
  std::map<std::string, std::size_t> out;
  for (const ax::layer_report_entry& e : net.layer_report()) {
    const auto& p = net.activation_products();
    if (!e.quantizable &&
        std::none_of(p.begin(), p.end(), [&](const auto& x) { return x.name == e.node; }))
      ++out[e.op_type + ": " + e.reason];
  }
  return out;
}

// The imported network, recording each layer's final quantized form for the exporter.
struct recording_network {
  ax::onnx_network& net;
  std::map<std::size_t, aq::quantized_layer> layers;

  std::size_t calibration_size() const { return net.calibration_size(); }
  std::vector<aq::layer_desc> quantizable_layers() const { return net.quantizable_layers(); }
  aq::layer_io capture(std::size_t id, std::size_t first, std::size_t count, aq::capture_mode m) {
    return net.capture(id, first, count, m);
  }
  aq::layer_io capture(std::size_t id, std::size_t first, std::size_t count, aq::capture_mode m,
                       aq::capture_parts want) {
    return net.capture(id, first, count, m, want);
  }
  // The weights stay in the network's quantized graph only (export reads them back from there).
  void set_quantized(const aq::quantized_layer& q) {
    net.set_quantized(q);
    aq::quantized_layer& kept = layers[q.id];
    kept = q;
    std::vector<float>().swap(kept.weight);
  }
  const aq::batch_norm_params* folded_batch_norm(std::size_t id) const {
    return net.folded_batch_norm(id);
  }
  double calibration_loss() { return net.calibration_loss(); }
};
static_assert(aq::PipelineNetwork<recording_network> && aq::LossNetwork<recording_network>);

// What identifies a run for --checkpoint: the settings, the other flags that change a result (as
// resolved), the model's and the calibration data's bytes.
ex::run_identity checkpoint_identity(const args& a, const std::vector<input_decl>& decl,
                                     const std::vector<data_file>& calib_files,
                                     const ax::network_options& no) {
  ex::run_identity id = ex::settings_identity(a.settings);
  id.push_back({"argument", "--calib-count", std::to_string(a.calib_count)});
  for (std::size_t k = 0; k < decl.size(); ++k)
    id.push_back({"argument", "--input-shape " + decl[k].name,
                  ax::shape_string(no.compile.sample_shapes[k])});
  id.push_back({"argument", "--loss-samples", std::to_string(no.loss_samples)});
  if (no.token_mask) id.push_back({"argument", "--token-mask", *no.token_mask});
  for (const std::string& part : a.eight_bit_layers)
    id.push_back({"argument", "--8bit-layers", part});
  id.push_back({"argument", "--embedding-bits", std::to_string(a.embedding_bits)});
  // Not a flag, but it changes AdaQuant's results on layers above step_macs / batch_size MACs
  // per sample: a checkpoint written under another value is refused.
  id.push_back({"argument", "adaquant_options::step_macs",
                std::to_string(aq::adaquant_options{}.step_macs)});
  if (a.act_products) {
    id.push_back({"argument", "--act-products-bits", std::to_string(a.act_products)});
    id.push_back({"argument", "--act-products-range", a.act_products_range});
    for (const std::string& part : a.act_products_8bit)
      id.push_back({"argument", "--act-products-8bit", part});
  }
  id.push_back({"model", "model", ex::sha256_file(a.model), a.model});
  for (std::size_t k = 0; k < decl.size(); ++k)
    id.push_back({"data", decl[k].name, calib_files[k].sha256, calib_files[k].path});
  return id;
}

// Mean KL(p_fp32 || p_q) of the softmax of two [samples, classes] logits, in double, and the
// samples whose argmax (first on ties) differs.
struct fp32_distance {
  double kl = 0.0;
  std::size_t changed = 0;
};
fp32_distance distance_from_fp32(const ax::tensor& fp, const ax::tensor& q) {
  fp32_distance d;
  const std::size_t n = static_cast<std::size_t>(fp.shape.at(0)), k = n ? fp.size() / n : 0;
  std::vector<double> lp, lq;
  for (std::size_t i = 0; i < n; ++i) {
    const float* a = fp.f.data() + i * k;
    const float* b = q.f.data() + i * k;
    ax::detail::log_softmax(a, k, lp);
    ax::detail::log_softmax(b, k, lq);
    for (std::size_t j = 0; j < k; ++j) d.kl += std::exp(lp[j]) * (lp[j] - lq[j]);
    d.changed += std::max_element(a, a + k) - a != std::max_element(b, b + k) - b;
  }
  if (n) d.kl /= static_cast<double>(n);
  return d;
}

void write_text_atomically(const std::string& path, const std::string& text) {
  ax::write_file_atomically(path, text, "adaquant_ptq: --json");
}

// --fp32-only: the FP32 model's top-1 on the test data and how long the evaluation took.
int evaluate_fp32_only(const args& a, const ax::onnx_network& net,
                       const std::vector<ax::tensor>& test, const std::vector<std::int64_t>& labels,
                       const std::vector<data_file>& test_files, const ax::eval_options& ev) {
  const auto t0 = std::chrono::steady_clock::now();
  const ax::eval_result fp = net.evaluate(test, labels, ev);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s fp32: top-1 %.2f%% (%zu of %zu), evaluated in %.3f s\n", a.model.c_str(),
              100 * fp.accuracy, fp.correct, fp.samples, seconds);
  if (!a.json.empty()) {
    nlohmann::json files = nlohmann::json::array();
    for (const data_file& f : test_files) files.push_back({{"path", f.path}, {"sha256", f.sha256}});
    const nlohmann::json j = {{"tool", "adaquant_ptq"},
                              {"model", {{"path", a.model}, {"sha256", ex::sha256_file(a.model)}}},
                              {"test", {{"files", files}, {"samples", fp.samples}}},
                              {"threads", a.threads},
                              {"eval_batch", a.eval_batch},
                              {"fp32_top1", fp.accuracy},
                              {"fp32_correct", fp.correct},
                              {"fp32_eval_seconds", seconds}};
    write_text_atomically(a.json, j.dump(2) + "\n");
  }
  return 0;
}

int run(const args& a) {
  const auto t0 = std::chrono::steady_clock::now();
  const ex::pipeline_settings& s = a.settings;
  const aq::quantization_spec quant = ex::quantization_of(s);
  for (const auto& [flag, path] :
       {std::pair{"--output", a.output}, std::pair{"--encodings", a.encodings},
        std::pair{"--json", a.json}, std::pair{"--logits", a.logits}})
    cli.check_writable_file(flag, path);

  ax::model m = ax::load_model(a.model);
  const std::vector<input_decl> decl = model_inputs(m);
  if (decl.empty()) cli.fail(a.model + ": the model has no inputs");
  std::vector<data_file> calib_files, test_files;
  std::vector<ax::tensor> test, calib;
  if (!a.fp32_only) calib = read_inputs("--calib", a.calib, decl, calib_files, a.calib_count);
  ex::npy_array<std::int64_t> labels;
  if (!a.test_data.empty()) {
    test = read_inputs("--test-data", a.test_data, decl, test_files, a.test_count);
    labels = ex::read_npy<std::int64_t>(a.test_labels);
    test_files.push_back({a.test_labels, ex::sha256_file(a.test_labels)});
    if (a.test_count > 0 && labels.shape.size() == 1 && labels.shape[0] >= a.test_count) {
      labels.values.resize(a.test_count);
      labels.shape[0] = a.test_count;
    }
    if (!(labels.shape.size() == 1 &&
          labels.shape[0] == static_cast<std::size_t>(test[0].shape[0])))
      throw aq::error(aq::errc::shape_mismatch,
                      "adaquant_ptq: --test-labels: " + a.test_labels + " has shape " +
                          ax::shape_string(
                              std::vector<std::int64_t>(labels.shape.begin(), labels.shape.end())) +
                          ", expected [" + std::to_string(test[0].shape[0]) + "]");
  }
  if (a.fp32_only)  // the network wants calibration inputs: the first test sample stands in
    for (const ax::tensor& t : test) calib.push_back(t.items(0, 1));
  ax::network_options no;
  no.compile.sample_shapes =
      sample_shapes(a, m, decl, calib, a.fp32_only ? "--test-data" : "--calib");
  no.loss_samples =
      std::min<std::size_t>(a.loss_samples, static_cast<std::size_t>(calib[0].shape[0]));
  no.threads = a.threads;
  no.token_mask = a.token_mask;
  if (a.act_products) {
    ax::activation_products_options p;
    p.spec = quant.activations->with_bits(a.act_products);
    p.spec.range = aq::parse_range_method(a.act_products_range);
    p.eight_bit = a.act_products_8bit;
    no.activation_products = p;
  }
  if (!test.empty()) {
    for (std::size_t k = 0; k < decl.size(); ++k) {
      const ax::shape_t item(test[k].shape.begin() + 1, test[k].shape.end());
      if (item != no.compile.sample_shapes[k])
        throw aq::error(aq::errc::shape_mismatch,
                        "adaquant_ptq: --test-data: input '" + decl[k].name +
                            "' has per-sample shape " + ax::shape_string(item) +
                            ", the model input needs " +
                            ax::shape_string(no.compile.sample_shapes[k]) + " (as --calib)");
    }
  }
  const std::int64_t calib_samples = calib[0].shape[0];
  // The network keeps the only copy of the calibration inputs and of the ModelProto.
  ax::onnx_network net(std::move(m), std::move(calib), no);
  const std::map<std::string, std::size_t> kept_float = float_nodes(net);
  if (!a.fp32_only && net.quantizable_layers().empty()) {
    std::string why;
    for (const auto& [reason, count] : kept_float)
      why += "; " + std::to_string(count) + " x " + reason;
    throw aq::error(aq::errc::invalid_argument,
                    "adaquant_ptq: " + a.model + ": no quantizable layer" + why);
  }
  ax::eval_options ev;
  ev.threads = a.threads;
  ev.batch = a.eval_batch;
  if (a.fp32_only) return evaluate_fp32_only(a, net, test, labels.values, test_files, ev);
  recording_network rec{net, {}};
  std::optional<ex::checkpoint_dir> checkpoint;
  if (!a.checkpoint.empty()) {
    checkpoint.emplace(a.checkpoint, checkpoint_identity(a, decl, calib_files, no),
                       "adaquant_ptq: --checkpoint");
    if (!a.quiet && checkpoint->records_found() > 0)
      std::fprintf(stderr, "resuming from %s: %zu units saved\n", a.checkpoint.c_str(),
                   checkpoint->records_found());
  }

  // Validate the whole configuration (bits, budget) before the first expensive step.
  // Captures of at most 100 samples and 32 MiB of the largest layer's inputs and outputs, a
  // multiple of the threads that split them (the results do not depend on it; ImageNet-size
  // layers get chunks of 6 to 8 samples).
  const std::size_t workers = aq::resolve_threads(a.threads);
  const std::size_t chunk =
      aq::capture_batch_within(net.quantizable_layers(), std::size_t{32} << 20, 100);
  aq::execution_context ctx{a.threads, std::max(workers, chunk / workers * workers),
                            ex::pipeline_progress_bar(a.quiet)};
  if (checkpoint) ctx.checkpoint = &*checkpoint;
  aq::quantization_spec q8 = quant;  // with the --8bit-layers positions
  for (const std::string& part : a.eight_bit_layers) {
    const std::size_t before = q8.fixed_8bit_layers.size();
    const std::vector<aq::layer_desc> layers = net.quantizable_layers();
    for (std::size_t i = 0; i < layers.size(); ++i)
      if (net.full_precision().at(layers[i].id).name.find(part) != std::string::npos)
        q8.fixed_8bit_layers.push_back(i);
    if (q8.fixed_8bit_layers.size() == before)
      cli.fail("--8bit-layers: no layer's node name contains '" + part + "'");
  }
  // Embedding tables per row, before the pipeline: the layers calibrate on their quantized lookups.
  std::vector<ax::exported_embedding> embeddings;
  if (a.embedding_bits > 0)
    for (const ax::embedding_table& t : net.embeddings().tables) {
      aq::quantizer_spec spec = quant.weights.with_bits(a.embedding_bits);
      spec.gran = aq::granularity::per_channel(0);
      const ax::quantized_embedding qe =
          ax::quantize_embedding(t, *net.full_precision().constant_value(t.value), spec);
      net.set_embedding(qe);
      embeddings.push_back(ax::make_exported_embedding(qe));
    }
  aq::pipeline_report rep;
  if (s.pipeline == "advanced") {
    aq::advanced_config c = ex::advanced_config_of(s);
    c.quant = q8;
    rep = aq::advanced_pipeline(rec, c, ctx);
  } else {
    aq::light_config c = ex::light_config_of(s);
    c.quant = q8;
    rep = aq::light_pipeline(rec, c, ctx);
  }

  // Export.
  std::vector<ax::exported_layer> exported;
  nlohmann::json layer_json = nlohmann::json::array();
  const std::vector<ax::layer_origin> origins = net.layer_origins();
  for (std::size_t i = 0; i < origins.size(); ++i) {
    const ax::layer_origin& o = origins[i];
    const auto it = rec.layers.find(o.id);
    if (it == rec.layers.end()) continue;
    it->second.weight = net.quantized().at(o.id).layer->weight.f;  // as set_quantized left it
    exported.push_back(ax::make_exported_layer(it->second, o.node, o.weight_initializer,
                                               o.bias_initializer, o.folded_batch_norm));
    layer_json.push_back({{"node", o.node},
                          {"op_type", o.op_type},
                          {"weight_bits", exported.back().weight_bits},
                          {"act_bits", exported.back().input ? exported.back().input->bits : 32},
                          {"folded_batch_norm", o.folded_batch_norm}});
  }
  net.estimate_activation_products();  // those the pipeline's captures did not need yet
  std::vector<ax::exported_product> products;
  for (const ax::activation_product& p : net.activation_products())
    products.push_back(ax::make_exported_product(p));
  ax::export_options eo;
  eo.allow_4bit_types = a.four_bit_types;
  eo.signed_8bit_weights = a.int8_weights;
  ::onnx::ModelProto out;
  ax::export_qdq(net.model_proto(), exported, embeddings, products, eo, out);

  // Accuracy of our own simulation.
  std::optional<ax::eval_result> fp, qr;
  double fp_seconds = 0.0;
  if (!test.empty()) {
    const auto te = std::chrono::steady_clock::now();
    fp = net.evaluate(test, labels.values, ev);
    fp_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
    ev.quantized = true;
    qr = net.evaluate(test, labels.values, ev);
  }

  // Outputs, each atomically.
  ax::write_model(out, a.output);
  if (!a.encodings.empty())
    ax::write_encodings(net.model_proto(), exported, embeddings, products, a.encodings, eo);
  if (!a.logits.empty()) {
    std::vector<std::size_t> shape;
    for (std::int64_t d : qr->logits.shape) shape.push_back(static_cast<std::size_t>(d));
    const std::vector<std::uint8_t> bytes = ex::npy_bytes<float>(shape, qr->logits.f);
    ax::write_file_atomically(
        a.logits, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
        "adaquant_ptq: --logits");
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::string acts = s.weight_only ? " weight-only" : "A" + std::to_string(s.abits);
  std::printf("%s %s W%d%s%s: weights %.1f%% of fp32 (%.1f%% with scales)", a.model.c_str(),
              s.pipeline.c_str(), s.wbits, acts.c_str(),
              quant.first_last_8bit ? " (first/last 8-bit)" : "", 100 * rep.size_ratio(),
              100 * rep.size_ratio_with_params());
  if (fp)
    std::printf(", fp32 top-1 %.2f%%, quantized top-1 %.2f%% (%+.2f) on %zu samples",
                100 * fp->accuracy, 100 * qr->accuracy, 100 * (qr->accuracy - fp->accuracy),
                qr->samples);
  std::printf(", %.1f s -> %s\n", seconds, a.output.c_str());
  for (const auto& [reason, count] : kept_float)  // e.g. the attention products
    std::printf("  stays float: %zu x %s\n", count, reason.c_str());
  nlohmann::json embedding_json = nlohmann::json::array(), float_gathers = nlohmann::json::array();
  std::size_t embedding_bytes = 0, fp32_embedding_bytes = 0;  // without the per-row scales
  for (const ax::embedding_table& t : net.embeddings().tables) {
    fp32_embedding_bytes += t.rows * t.cols * 4;
    embedding_bytes += a.embedding_bits
                           ? (t.rows * t.cols * static_cast<std::size_t>(a.embedding_bits) + 7) / 8
                           : t.rows * t.cols * 4;
    std::printf("  embedding table '%s' [%zu, %zu] (%s): %s\n", t.initializer.c_str(), t.rows,
                t.cols, t.node_name.c_str(),
                a.embedding_bits ? (std::to_string(a.embedding_bits) + " bits per row").c_str()
                                 : "float (--embedding-bits none)");
    embedding_json.push_back({{"node", t.node_name},
                              {"table", t.initializer},
                              {"rows", t.rows},
                              {"cols", t.cols},
                              {"bits", a.embedding_bits ? a.embedding_bits : 32}});
  }
  for (const ax::embedding_skip& k : net.embeddings().skipped) {
    std::printf("  stays float: Gather '%s': %s\n", k.node.c_str(), k.reason.c_str());
    float_gathers.push_back({{"node", k.node}, {"reason", k.reason}});
  }
  if (!net.activation_products().empty())
    std::printf(
        "  activation products: %zu MatMuls of two activations, both operands quantized "
        "at %d bits (%s ranges)\n",
        net.activation_products().size(), a.act_products, a.act_products_range.c_str());
  std::size_t token_layers = 0;
  for (const aq::layer_desc& d : net.quantizable_layers())
    token_layers += d.geometry.kind == aq::layer_kind::linear && d.geometry.linear.rows > 1;
  if (token_layers)
    std::printf("  token-wise layers: %zu, padding from %s\n", token_layers,
                net.token_mask().empty() ? "nothing (every token counts)"
                                         : ("input '" + net.token_mask() + "'").c_str());
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& step : rep.steps) {
    std::printf("  %-16s %8.2f s  %s\n", step.name.c_str(), step.seconds, step.summary.c_str());
    steps.push_back({{"name", step.name},
                     {"seconds", step.seconds},
                     {"cpu_seconds", step.cpu_seconds},
                     {"summary", step.summary}});
  }
  if (!a.json.empty()) {
    const auto files = [](const std::vector<data_file>& v) {
      nlohmann::json j = nlohmann::json::array();
      for (const data_file& f : v) j.push_back({{"path", f.path}, {"sha256", f.sha256}});
      return j;
    };
    nlohmann::json j = {
        {"tool", "adaquant_ptq"},
        {"model", {{"path", a.model}, {"sha256", ex::sha256_file(a.model)}}},
        {"calib", {{"files", files(calib_files)}, {"samples", calib_samples}}},
        {"settings",
         {{"pipeline", s.pipeline},
          {"wbits", s.wbits},
          {"abits", s.abits},
          {"first_last_8bit", quant.first_last_8bit},
          {"eight_bit_layers", a.eight_bit_layers},
          {"embedding_bits", a.embedding_bits},
          {"token_mask", net.token_mask()},
          {"act_products",
           a.act_products ? nlohmann::json(a.act_products) : nlohmann::json(nullptr)},
          {"act_products_range",
           a.act_products ? nlohmann::json(a.act_products_range) : nlohmann::json(nullptr)},
          {"act_products_8bit", a.act_products_8bit},
          {"weight_range", aq::to_string(quant.weights.range)},
          {"act_range", quant.activations ? aq::to_string(quant.activations->range) : "none"},
          {"weight_only", s.weight_only},
          {"percentile", s.percentile},
          {"rounding", s.rounding},
          {"max_size_ratio",
           s.max_size_ratio ? nlohmann::json(*s.max_size_ratio) : nlohmann::json(nullptr)},
          {"bit_options", s.bit_options},
          {"bit_rounds", s.bit_rounds},
          {"loss_samples", no.loss_samples},
          {"iterations",
           s.pipeline == "advanced" ? nlohmann::json(s.iterations) : nlohmann::json(nullptr)},
          {"order", s.order},
          {"seed", s.seed},
          {"qdrop", s.qdrop ? nlohmann::json(*s.qdrop) : nlohmann::json("default")},
          {"weight_rounding", s.weight_rounding.empty() ? "default" : s.weight_rounding},
          {"adaround_lambda",
           s.adaround_lambda ? nlohmann::json(*s.adaround_lambda) : nlohmann::json("default")},
          {"bn_tuning", ex::bn_tuning_of(s).has_value()},
          {"bn_target", s.bn_target},
          {"bias", s.bias && s.pipeline != "naive"},
          {"four_bit_types", a.four_bit_types},
          {"int8_weights", a.int8_weights},
          {"threads", a.threads},
          {"eval_batch", a.eval_batch}}},
        {"size_ratio", rep.size_ratio()},
        {"weight_bytes", rep.weight_bytes},
        {"fp32_weight_bytes", rep.fp32_weight_bytes},
        {"param_bytes", rep.param_bytes},
        {"layers", layer_json},
        {"embeddings", embedding_json},
        {"embedding_bytes", embedding_bytes},
        {"fp32_embedding_bytes", fp32_embedding_bytes},
        {"float_gathers", float_gathers},
        {"float_nodes", kept_float},
        {"activation_products", net.activation_products().size()},
        {"steps", steps},
        {"output", {{"path", a.output}, {"bytes", fs::file_size(a.output)}}},
        {"seconds", seconds}};
    if (!a.encodings.empty()) j["encodings"] = a.encodings;
    if (checkpoint)
      j["checkpoint"] = {{"path", a.checkpoint}, {"units_found", checkpoint->records_found()}};
    if (fp) {
      j["test"] = {{"files", files(test_files)}, {"samples", qr->samples}};
      j["fp32_top1"] = fp->accuracy;
      j["quant_top1"] = qr->accuracy;
      j["fp32_correct"] = fp->correct;
      j["fp32_eval_seconds"] = fp_seconds;
      j["quant_correct"] = qr->correct;
      const fp32_distance d = distance_from_fp32(fp->logits, qr->logits);
      j["kl_from_fp32"] = d.kl;
      j["changed_from_fp32"] = d.changed;
    }
    write_text_atomically(a.json, j.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Buffers from 1 MiB up (activations) get their own mappings, returned to the system when
  // freed; glibc's heaps would keep freed ones resident, and its default threshold rises to
  // 32 MiB after the first large free (on ResNet-50 the peak RSS stood well above the live data).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  try {
    return run(parse(argc, argv));
  } catch (const aq::error& e) {
    std::fprintf(stderr, "\n%s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nadaquant_ptq: %s\n", e.what());
    return 1;
  }
}
