#pragma once
// What the command-line examples (fashion_mnist_ptq, adaquant_ptq) share: the settings their
// pipeline flags set and the one mapping from those settings to adaquant's pipeline configs,
// argument values parsed with one error wording, output paths checked before any work starts,
// and the pipeline's progress bar. Each CLI keeps its own flags, defaults and messages for
// invalid choices; every failure here throws adaquant::error (errc::invalid_argument)
// "<tool>: <reason>", which both CLIs turn into exit code 2.

#include <adaquant/core/execution.hpp>
#include <adaquant/pipeline/advanced.hpp>
#include <adaquant/pipeline/light.hpp>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace adaquant::examples {

// A pipeline run as the flags describe it (choices as typed; the CLI has validated them).
struct pipeline_settings {
  std::string pipeline{};                  // naive | light | advanced
  int wbits = 4, abits = 4;                // weights per channel, activations per tensor
  std::size_t weight_block = 0;            // > 0: weights per block of this many inputs
  bool weight_only = false;                // no activation quantizer: inputs stay float
  bool all_layers = false;                 // light/advanced: first and last layer not at 8 bits
  std::vector<std::string> eight_bit_layers{};  // node-name parts: those layers stay at 8 bits
  std::string weight_range{};              // min_max | percentile | mse; empty: mse, naive: min_max
  std::string act_range{};                 // the same for the activations
  double percentile = 99.99;               // of the percentile range method
  std::string rounding = "pytorch";        // pytorch | onnx: both quantizer_specs' rounding
  std::optional<double> max_size_ratio{};  // bit allocation's budget; empty: no bit allocation
  std::vector<int> bit_options{2, 3, 4, 8};         // weight bits bit allocation chooses from
  int bit_rounds = bit_allocation_budget{}.rounds;  // loss tables bit allocation measures
  bool recalibrate_allocation = true;  // advanced: the chosen bits calibrated again, sequentially
  std::size_t iterations = 1000;       // AdaQuant per layer; 0: AdaQuant's default
  std::string order = "sequential";    // sequential | parallel AdaQuant
  std::string reconstruction{};        // layer | block (BRECQ; sequential only); empty: by bits
  std::string blocks = "auto";         // auto | N | FIRST..LAST,... (block_spec)
  std::uint64_t seed = 0;              // AdaQuant's
  std::size_t batch_size = adaquant_options{}.batch_size;  // AdaQuant's samples per step
  double step_macs = adaquant_options{}.step_macs;  // bound on a step's multiply-adds; 0: none
  std::optional<double> qdrop{};       // AdaQuant's QDrop probability; empty: by bits
  std::optional<double> lr_weight{};   // AdaQuant's relative rate of V; empty: default
  std::optional<double> lr_quant{};    // ... of both quantizers' scales; empty: default
  std::string weight_rounding{};       // learned_step | adaround; empty: by bits
  std::optional<double> adaround_lambda{};  // AdaRound's regulariser weight; empty: default
  std::optional<double> inner_weight{};     // block reconstruction's inner term; empty: by bits
  // Block reconstruction's trial run (iterations; 0: none); empty: by the block's layer count.
  std::optional<std::size_t> trial_iterations{};
  bool bn_tuning = true;                    // light/advanced
  std::string bn_target = "running";        // running | fp: BN tuning's reference statistics
  bool bias = true;                         // bias correction (light) / bias tuning (advanced)
};

// --blocks, parsed: "auto" (the network's automatic blocks), N >= 2 (runs of up to N layers) or
// FIRST..LAST[,FIRST..LAST...] (blocks by the names of their first and last layers).
struct block_spec {
  std::size_t max_layers = 0;
  std::vector<std::pair<std::string, std::string>> named;
};
[[nodiscard]] block_spec parse_block_spec(const struct cli& c, const std::string& v);

// Named blocks' layer ids: layer_id(name) gives the id of the quantizable layer of that name, or
// nothing; "--blocks: no layer named '<name>'" otherwise. Empty unless --blocks names blocks.
using layer_lookup = std::function<std::optional<std::size_t>(const std::string&)>;
[[nodiscard]] std::vector<std::pair<std::size_t, std::size_t>> named_blocks(
    const struct cli& c, const pipeline_settings& s, const layer_lookup& layer_id);

// --8bit-layers' positions in the network's quantizable_layers() (quantization_spec::
// fixed_8bit_layers): every layer whose node name, node_name(position), contains one of the
// parts; "--8bit-layers: no layer's node name contains '<part>'" when a part matches none.
[[nodiscard]] std::vector<std::size_t> eight_bit_positions(
    const struct cli& c, const pipeline_settings& s, std::size_t layers,
    const std::function<std::string(std::size_t)>& node_name);

// The configs the settings describe: every setting has its one place here. advanced_config_of
// takes the named blocks' ids (named_blocks) when --blocks names blocks.
[[nodiscard]] quantization_spec quantization_of(const pipeline_settings& s);
[[nodiscard]] std::optional<bit_allocation_budget> bit_allocation_of(const pipeline_settings& s);
[[nodiscard]] std::optional<bn_tuning_options> bn_tuning_of(const pipeline_settings& s);
[[nodiscard]] light_config light_config_of(const pipeline_settings& s);  // naive and light
[[nodiscard]] advanced_config advanced_config_of(
    const pipeline_settings& s, std::vector<std::pair<std::size_t, std::size_t>> named = {});

// The advanced pipeline for "advanced", else the light one (naive is a light configuration).
// eight_bit: the --8bit-layers positions (eight_bit_positions).
template <PipelineNetwork Net>
pipeline_report run_pipeline(Net& net, const pipeline_settings& s, const execution_context& ctx,
                             std::vector<std::pair<std::size_t, std::size_t>> named = {},
                             std::vector<std::size_t> eight_bit = {}) {
  if (s.pipeline == "advanced") {
    advanced_config c = advanced_config_of(s, std::move(named));
    c.quant.fixed_8bit_layers = std::move(eight_bit);
    return advanced_pipeline(net, c, ctx);
  }
  light_config c = light_config_of(s);
  c.quant.fixed_8bit_layers = std::move(eight_bit);
  return light_pipeline(net, c, ctx);
}

// The pipeline flags both CLIs take, parsed and checked in one place (one wording):
//   --pipeline naive|light|advanced   --wbits B   --abits B   --all-layers   --8bit-layers P,P,..
//   --max-size-ratio R   --bit-options B,B,..   --bit-rounds N   --no-recalibrate-allocation
//   --iterations N   --order sequential|parallel   --reconstruction layer|block
//   --blocks auto|N|FIRST..LAST,...   --seed N
//   --qdrop P   --lr-weight R
//   --lr-quant R   --weight-rounding learned_step|adaround   --adaround-lambda L   --inner-weight W
//   --trial-iterations N
//   --no-bn-tuning   --bn-target running|fp   --no-bias
// parse_pipeline_flag: when `flag` is one of them, reads its value (value() returns the next
// argument, or fails when there is none) into s and returns true; else returns false and reads
// nothing. check_pipeline_settings: "<flag>: must be ..." unless every setting is in its domain.
[[nodiscard]] bool parse_pipeline_flag(const struct cli& c, const std::string& flag,
                                       const std::function<std::string()>& value,
                                       pipeline_settings& s);
void check_pipeline_settings(const struct cli& c, const pipeline_settings& s);

// Argument checks of one tool; `tool` prefixes every message.
struct cli {
  std::string tool;

  [[noreturn]] void fail(const std::string& reason) const;
  // "<flag>: not an integer: '<v>'"
  [[nodiscard]] long long to_int(const std::string& flag, const std::string& v) const;
  // to_int, then "<flag>: must be >= 0, got <v>"
  [[nodiscard]] std::size_t to_count(const std::string& flag, const std::string& v) const;
  // "<flag>: not a number: '<v>'"
  [[nodiscard]] double to_double(const std::string& flag, const std::string& v) const;
  // comma-separated integers
  [[nodiscard]] std::vector<long long> to_list(const std::string& flag, const std::string& v) const;
  // comma-separated non-empty strings: "<flag>: empty name part in '<v>'"
  [[nodiscard]] std::vector<std::string> to_name_parts(const std::string& flag,
                                                       const std::string& v) const;
  // "channel" -> 0, "block:N" -> N >= 1 (pipeline_settings::weight_block)
  [[nodiscard]] std::size_t to_weight_block(const std::string& flag, const std::string& v) const;
  // "<flag>: must be one of a, b, got '<v>'"
  void one_of(const std::string& flag, const std::string& v,
              std::initializer_list<const char*> ok) const;
  // An output file: its folder exists and takes a file, and the path is not a folder. Empty: ok.
  void check_writable_file(const std::string& flag, const std::string& path) const;
  // An output folder: it exists and takes a file.
  void check_writable_folder(const std::string& flag, const std::string& dir) const;
};

// A pipeline's progress (execution_context::progress) as a bar on stderr; empty when quiet.
[[nodiscard]] std::function<void(const progress_event&)> pipeline_progress_bar(bool quiet);

}  // namespace adaquant::examples
