// adaquant_ptq's flags: the usage text and parse() (args.hpp).
#include "args.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace adaquant_ptq {

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
  --no-recalibrate-allocation
                         advanced with bit allocation: keep the allocation's
                         parallel-order calibration instead of calibrating the
                         chosen bits again in sequential order (kept only when
                         it lowers the calibration loss; about twice the time)
  --loss-samples N       calibration samples of bit allocation's loss      [256]
  --iterations N         AdaQuant iterations per layer                     [1000]
  --order O              sequential | parallel AdaQuant                    [sequential]
  --reconstruction U     layer | block: AdaQuant per layer, or whole residual blocks
                         (BRECQ; sequential order; docs/block.md)  [by bits: block below 4
                         weight bits in sequential order, else layer]
  --blocks B             with block reconstruction: auto (the residual blocks; by bits
                         without --reconstruction: runs of every layer when an input is
                         below 3 bits), N (runs of up to N layers) or FIRST..LAST,...
                         (ONNX node names)                                 [auto]
  --seed N               AdaQuant's seed                                   [0]
  --batch-size N         AdaQuant's samples per step                       [50]
  --step-macs X          bound on one step's multiply-adds: a layer (a block: X per layer)
                         whose step would exceed it takes fewer samples, at least 1;
                         0 = no bound                                      [1.28e8]
  --qdrop P              AdaQuant's QDrop: each input element keeps its float value with
                         probability P in [0, 1] while optimising       [by bits: docs/lowbit.md]
  --lr-weight R          AdaQuant's relative rate of the weight offsets, every layer
                         [2e-3; weights above 4 bits with inputs below 4 bits: up to 0.032,
                         docs/lowbit.md]
  --lr-quant R           AdaQuant's relative rate of the quantizer scales  [1e-3]
  --weight-rounding M    learned_step | adaround: how AdaQuant learns the weights
                         (AdaRound: learned up/down rounding)          [by bits: docs/lowbit.md]
  --adaround-lambda L    AdaRound's regulariser weight, >= 0               [1000]
  --inner-weight W       block reconstruction: weight of each layer's own error against its
                         full-precision output inside the block, >= 0 (0: the block output's
                         error alone)                                   [by bits: docs/lowbit.md]
  --trial-iterations N   block reconstruction: a second run of each block with N iterations;
                         the run with the lower network loss on calibration data is kept (0:
                         none)       [blocks of more than 3 layers: twice --iterations, else 0]
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

}  // namespace

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
    } else if (f == "--weight-only")
      s.weight_only = true;
    else if (f == "--weight-granularity")
      s.weight_block = cli.to_weight_block(f, value());
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
      a.act_products_8bit = cli.to_name_parts(f, value());
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
    else if (f == "--loss-samples")
      a.loss_samples = cli.to_count(f, value());
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
    else if (!ex::parse_pipeline_flag(cli, f, value, s))
      cli.fail("unknown argument '" + f + "' (see --help)");
    if (f == "--abits") act_flags = true;
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
  ex::check_pipeline_settings(cli, s);
  cli.one_of("--rounding", s.rounding, {"onnx", "pytorch"});
  // Empty ranges are the pipeline's default (mse; naive: min_max).
  if (!s.weight_range.empty())
    cli.one_of("--weight-range", s.weight_range, {"min_max", "percentile", "mse"});
  if (!s.act_range.empty())
    cli.one_of("--act-range", s.act_range, {"min_max", "percentile", "mse"});
  if (!(s.percentile > 0.0 && s.percentile <= 100.0)) cli.fail("--percentile: must be in (0, 100]");
  if (a.loss_samples == 0) cli.fail("--loss-samples: must be > 0");
  return a;
}

}  // namespace adaquant_ptq
