#include <adaquant_runtime/cli.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>

namespace adaquant::examples {

namespace {
range_method range_of(const std::string& typed, const pipeline_settings& s) {
  if (!typed.empty()) return parse_range_method(typed);
  return s.pipeline == "naive" ? range_method::min_max : range_method::mse;
}
quantizer_spec with_settings(quantizer_spec q, const std::string& range,
                             const pipeline_settings& s) {
  q.range = range_of(range, s);
  q.settings.percentile = s.percentile;
  q.rounding = s.rounding == "onnx" ? rounding_mode::onnx : rounding_mode::pytorch;
  return q;
}

// v read by `read` (std::stoll, std::stod, ...) when all of v is the number, else nothing.
template <class T, class Read>
std::optional<T> whole_number(const std::string& v, Read read) {
  std::size_t used = 0;
  try {
    const T x = read(v, &used);
    if (!v.empty() && used == v.size()) return x;
  } catch (const std::exception&) {  // no digits, or out of range
  }
  return std::nullopt;
}
}  // namespace

quantization_spec quantization_of(const pipeline_settings& s) {
  quantization_spec q;
  q.weights =
      with_settings(s.weight_block ? quantizer_spec::weights_per_block(s.wbits, s.weight_block)
                                   : quantizer_spec::weights(s.wbits),
                    s.weight_range, s);
  if (s.weight_only)
    q.activations.reset();
  else
    q.activations = with_settings(quantizer_spec::activations(s.abits), s.act_range, s);
  q.first_last_8bit = !s.all_layers && s.pipeline != "naive";
  return q;
}

std::optional<bit_allocation_budget> bit_allocation_of(const pipeline_settings& s) {
  if (!s.max_size_ratio) return std::nullopt;
  return bit_allocation_budget{*s.max_size_ratio, s.bit_options, s.bit_rounds};
}

std::optional<bn_tuning_options> bn_tuning_of(const pipeline_settings& s) {
  if (!s.bn_tuning || s.pipeline == "naive") return std::nullopt;
  return bn_tuning_options{s.bn_target == "fp" ? bn_reference::full_precision
                                               : bn_reference::running_statistics};
}

light_config light_config_of(const pipeline_settings& s) {
  light_config c;
  c.quant = quantization_of(s);
  c.bit_allocation = bit_allocation_of(s);
  c.bn_tuning = bn_tuning_of(s);
  c.bias_correction = s.bias && s.pipeline != "naive";
  return c;
}

block_spec parse_block_spec(const cli& c, const std::string& v) {
  block_spec b;
  if (v == "auto") return b;
  if (!v.empty() &&
      std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    b.max_layers = c.to_count("--blocks", v);
    if (b.max_layers < 2) c.fail("--blocks: a run needs at least 2 layers, got " + v);
    return b;
  }
  for (std::size_t at = 0; at <= v.size();) {
    const std::size_t end = std::min(v.find(',', at), v.size());
    const std::string item = v.substr(at, end - at);
    const std::size_t dots = item.find("..");
    if (dots == std::string::npos || dots == 0 || dots + 2 == item.size())
      c.fail("--blocks: '" + item +
             "' is not FIRST..LAST (layer names); want auto, a number >= 2, or FIRST..LAST,...");
    b.named.emplace_back(item.substr(0, dots), item.substr(dots + 2));
    at = end + 1;
  }
  return b;
}

std::vector<std::pair<std::size_t, std::size_t>> named_blocks(const cli& c,
                                                              const pipeline_settings& s,
                                                              const layer_lookup& layer_id) {
  std::vector<std::pair<std::size_t, std::size_t>> ids;
  for (const auto& [first, last] : parse_block_spec(c, s.blocks).named) {
    std::pair<std::size_t, std::size_t> r;
    for (const auto& [name, id] : {std::pair{&first, &r.first}, std::pair{&last, &r.second}}) {
      const std::optional<std::size_t> found = layer_id(*name);
      if (!found) c.fail("--blocks: no quantizable layer named '" + *name + "'");
      *id = *found;
    }
    ids.push_back(r);
  }
  return ids;
}

std::vector<std::size_t> eight_bit_positions(
    const cli& c, const pipeline_settings& s, std::size_t layers,
    const std::function<std::string(std::size_t)>& node_name) {
  std::vector<std::size_t> out;
  for (const std::string& part : s.eight_bit_layers) {
    bool found = false;
    for (std::size_t i = 0; i < layers; ++i)
      if (node_name(i).find(part) != std::string::npos) {
        found = true;
        if (std::find(out.begin(), out.end(), i) == out.end()) out.push_back(i);
      }
    if (!found) c.fail("--8bit-layers: no layer's node name contains '" + part + "'");
  }
  std::sort(out.begin(), out.end());
  return out;
}

advanced_config advanced_config_of(const pipeline_settings& s,
                                   std::vector<std::pair<std::size_t, std::size_t>> named) {
  advanced_config c;
  c.quant = quantization_of(s);
  c.adaquant->layer.seed = s.seed;
  c.adaquant->layer.batch_size = s.batch_size;
  c.adaquant->layer.step_macs = s.step_macs;
  if (s.qdrop) c.adaquant->layer.qdrop = static_cast<float>(*s.qdrop);
  if (s.lr_weight) c.adaquant->layer.lr.weight = static_cast<float>(*s.lr_weight);
  if (s.lr_quant)
    c.adaquant->layer.lr.weight_quant = c.adaquant->layer.lr.act_quant =
        static_cast<float>(*s.lr_quant);
  if (s.iterations) c.adaquant->layer.iterations = s.iterations;
  if (!s.weight_rounding.empty())
    c.adaquant->layer.rounding =
        s.weight_rounding == "adaround" ? weight_rounding::adaround : weight_rounding::learned_step;
  if (s.adaround_lambda) c.adaquant->layer.adaround.lambda = static_cast<float>(*s.adaround_lambda);
  if (s.inner_weight) c.adaquant->layer.inner_weight = static_cast<float>(*s.inner_weight);
  if (s.trial_iterations) c.adaquant->layer.trial_iterations = *s.trial_iterations;
  c.adaquant->order =
      s.order == "parallel" ? calibration_order::parallel : calibration_order::sequential;
  if (!s.reconstruction.empty())
    c.adaquant->reconstruction =
        s.reconstruction == "block" ? reconstruction_unit::block : reconstruction_unit::layer;
  if (s.blocks != "auto") {
    c.adaquant->blocks.named = std::move(named);
    if (c.adaquant->blocks.named.empty())
      c.adaquant->blocks.max_layers = static_cast<std::size_t>(std::stoull(s.blocks));
  }
  c.bit_allocation = bit_allocation_of(s);
  c.recalibrate_allocation = s.recalibrate_allocation;
  c.bn_tuning = bn_tuning_of(s);
  c.bias_tuning = s.bias;
  return c;
}

bool parse_pipeline_flag(const cli& c, const std::string& f,
                         const std::function<std::string()>& value, pipeline_settings& s) {
  const auto optional_double = [&](std::optional<double>& x) { x = c.to_double(f, value()); };
  if (f == "--pipeline")
    s.pipeline = value();
  else if (f == "--wbits")
    s.wbits = static_cast<int>(c.to_int(f, value()));
  else if (f == "--abits")
    s.abits = static_cast<int>(c.to_int(f, value()));
  else if (f == "--all-layers")
    s.all_layers = true;
  else if (f == "--8bit-layers")
    s.eight_bit_layers = c.to_name_parts(f, value());
  else if (f == "--max-size-ratio")
    optional_double(s.max_size_ratio);
  else if (f == "--bit-options") {
    s.bit_options.clear();
    for (long long b : c.to_list(f, value())) s.bit_options.push_back(static_cast<int>(b));
  } else if (f == "--bit-rounds")
    s.bit_rounds = static_cast<int>(c.to_int(f, value()));
  else if (f == "--no-recalibrate-allocation")
    s.recalibrate_allocation = false;
  else if (f == "--iterations")
    s.iterations = c.to_count(f, value());
  else if (f == "--order")
    s.order = value();
  else if (f == "--reconstruction")
    s.reconstruction = value();
  else if (f == "--blocks")
    s.blocks = value();
  else if (f == "--seed")
    s.seed = static_cast<std::uint64_t>(c.to_count(f, value()));
  else if (f == "--batch-size")
    s.batch_size = c.to_count(f, value());
  else if (f == "--step-macs")
    s.step_macs = c.to_double(f, value());
  else if (f == "--qdrop")
    optional_double(s.qdrop);
  else if (f == "--lr-weight")
    optional_double(s.lr_weight);
  else if (f == "--lr-quant")
    optional_double(s.lr_quant);
  else if (f == "--weight-rounding")
    s.weight_rounding = value();
  else if (f == "--adaround-lambda")
    optional_double(s.adaround_lambda);
  else if (f == "--inner-weight")
    optional_double(s.inner_weight);
  else if (f == "--trial-iterations")
    s.trial_iterations = c.to_count(f, value());
  else if (f == "--no-bn-tuning")
    s.bn_tuning = false;
  else if (f == "--bn-target")
    s.bn_target = value();
  else if (f == "--no-bias")
    s.bias = false;
  else
    return false;
  return true;
}

void check_pipeline_settings(const cli& c, const pipeline_settings& s) {
  c.one_of("--pipeline", s.pipeline, {"naive", "light", "advanced"});
  c.one_of("--order", s.order, {"sequential", "parallel"});
  if (!s.reconstruction.empty()) c.one_of("--reconstruction", s.reconstruction, {"layer", "block"});
  if (s.reconstruction == "block" && s.order != "sequential")
    c.fail("--reconstruction: block needs --order sequential");
  (void)parse_block_spec(c, s.blocks);
  // By bits, blocks are reconstructed in sequential order below 4 weight bits, or when the
  // network's input is quantized to 4 bits or fewer (--all-layers with no --8bit-layers, which
  // could hold the first layer at 8): elsewhere --blocks would select blocks nothing reconstructs.
  const int wbits[] = {s.wbits};
  const int input_bits = s.all_layers && !s.weight_only && s.eight_bit_layers.empty() ? s.abits : 0;
  if (s.blocks != "auto" && s.reconstruction != "block" &&
      (s.reconstruction == "layer" || s.order != "sequential" ||
       !default_block_reconstruction(wbits, input_bits)))
    c.fail(
        "--blocks: needs block reconstruction (--reconstruction block, or by default below 4 "
        "weight bits, or with --all-layers at 4 input bits or fewer, in sequential order)");
  c.one_of("--bn-target", s.bn_target, {"running", "fp"});
  for (const auto& [flag, b] : {std::pair{"--wbits", s.wbits}, std::pair{"--abits", s.abits}})
    if (b < 2 || b > 16)
      c.fail(std::string(flag) + ": must be in [2, 16], got " + std::to_string(b));
  for (int b : s.bit_options)
    if (b < 2 || b > 16) c.fail("--bit-options: bits must be in [2, 16], got " + std::to_string(b));
  if (s.max_size_ratio && !(*s.max_size_ratio > 0.0 && *s.max_size_ratio <= 1.0))
    c.fail("--max-size-ratio: must be in (0, 1]");
  if (s.bit_rounds < 1) c.fail("--bit-rounds: must be >= 1");
  if (!s.recalibrate_allocation && (s.pipeline != "advanced" || !s.max_size_ratio))
    c.fail(
        "--no-recalibrate-allocation: only the advanced pipeline with bit allocation "
        "(--max-size-ratio) recalibrates the chosen bits");
  if (s.iterations == 0) c.fail("--iterations: must be > 0");
  if (s.batch_size == 0) c.fail("--batch-size: must be > 0");
  if (!(s.step_macs >= 0.0 && std::isfinite(s.step_macs)))
    c.fail("--step-macs: must be >= 0 (0: no bound)");
  if (s.qdrop && !(*s.qdrop >= 0.0 && *s.qdrop <= 1.0)) c.fail("--qdrop: must be in [0, 1]");
  if (!s.weight_rounding.empty())
    c.one_of("--weight-rounding", s.weight_rounding, {"learned_step", "adaround"});
  if (s.adaround_lambda && !(*s.adaround_lambda >= 0.0 && std::isfinite(*s.adaround_lambda)))
    c.fail("--adaround-lambda: must be >= 0");
  if (s.inner_weight && !(*s.inner_weight >= 0.0 && std::isfinite(*s.inner_weight)))
    c.fail("--inner-weight: must be >= 0 (0: the block output's error alone)");
  for (const auto& [flag, r] :
       {std::pair{"--lr-weight", s.lr_weight}, std::pair{"--lr-quant", s.lr_quant}})
    if (r && !(*r > 0.0 && std::isfinite(*r))) c.fail(std::string(flag) + ": must be > 0");
}

void cli::fail(const std::string& reason) const {
  throw error(errc::invalid_argument, tool + ": " + reason);
}

long long cli::to_int(const std::string& flag, const std::string& v) const {
  const auto x = whole_number<long long>(
      v, [](const std::string& t, std::size_t* used) { return std::stoll(t, used); });
  if (!x) fail(flag + ": not an integer: '" + v + "'");
  return *x;
}

std::size_t cli::to_count(const std::string& flag, const std::string& v) const {
  const long long x = to_int(flag, v);
  if (x < 0) fail(flag + ": must be >= 0, got " + v);
  return static_cast<std::size_t>(x);
}

double cli::to_double(const std::string& flag, const std::string& v) const {
  const auto x = whole_number<double>(
      v, [](const std::string& t, std::size_t* used) { return std::stod(t, used); });
  if (!x) fail(flag + ": not a number: '" + v + "'");
  return *x;
}

std::vector<std::string> cli::to_name_parts(const std::string& flag, const std::string& v) const {
  std::vector<std::string> out;
  for (std::size_t b = 0; b <= v.size();) {
    const std::size_t e = std::min(v.find(',', b), v.size());
    if (e == b) fail(flag + ": empty name part in '" + v + "'");
    out.push_back(v.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

std::vector<long long> cli::to_list(const std::string& flag, const std::string& v) const {
  std::vector<long long> out;
  for (std::size_t p = 0; p <= v.size();) {
    const std::size_t q = std::min(v.find(',', p), v.size());
    out.push_back(to_int(flag, v.substr(p, q - p)));
    p = q + 1;
  }
  return out;
}

std::size_t cli::to_weight_block(const std::string& flag, const std::string& v) const {
  if (v == "channel") return 0;
  const auto n = v.rfind("block:", 0) == 0
                     ? whole_number<long long>(v.substr(6),
                                               [](const std::string& t, std::size_t* used) {
                                                 return std::stoll(t, used);
                                               })
                     : std::nullopt;
  if (!n || *n < 1) fail(flag + ": must be channel or block:N with N >= 1, got '" + v + "'");
  return static_cast<std::size_t>(*n);
}

void cli::one_of(const std::string& flag, const std::string& v,
                 std::initializer_list<const char*> ok) const {
  std::string all;
  for (const char* o : ok) {
    if (v == o) return;
    all += (all.empty() ? "" : ", ") + std::string(o);
  }
  fail(flag + ": must be one of " + all + ", got '" + v + "'");
}

void cli::check_writable_folder(const std::string& flag, const std::string& dir) const {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(flag + ": folder " + dir + " does not exist");
  const fs::path probe = fs::path(dir) / ("." + tool + "_probe_" + std::to_string(::getpid()));
  {
    std::ofstream o(probe);
    if (!o) fail(flag + ": cannot write in folder " + dir);
  }
  fs::remove(probe, ec);
}

void cli::check_writable_file(const std::string& flag, const std::string& path) const {
  namespace fs = std::filesystem;
  if (path.empty()) return;
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(flag + ": folder " + dir.string() + " does not exist");
  if (fs::is_directory(p, ec)) fail(flag + ": " + path + " is a folder");
  check_writable_folder(flag, dir.string());
}

std::function<void(const progress_event&)> pipeline_progress_bar(bool quiet) {
  if (quiet) return {};
  return [](const progress_event& p) {
    const int width = 30;
    const int fill = p.total ? static_cast<int>(width * p.done / p.total) : width;
    std::fprintf(stderr, "\r  %-16.*s [%.*s%*s] %zu/%zu", static_cast<int>(p.step.size()),
                 p.step.data(), fill, "##############################", width - fill, "", p.done,
                 p.total);
    if (p.done == p.total) std::fputc('\n', stderr);
  };
}

}  // namespace adaquant::examples
