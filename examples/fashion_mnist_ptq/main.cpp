// fashion_mnist_ptq: quantize a reference model with the naive, light or advanced pipeline and
// measure top-1 accuracy on the full 10k Fashion-MNIST test set.
//
//   fashion_mnist_ptq --model resnet|mobilenetv2 --pipeline naive|light|advanced
//                     [--wbits 4] [--abits 4] [--max-size-ratio R] [--calib 1000] [--seed 0]
//                     [--json FILE] [--iterations N] [--test-limit N] [--no-bn-tuning]
//                     [--no-bias] [--all-layers] [--order sequential|parallel] [--quiet]
//                     [--bit-options 2,3,4,8]   (weight bits bit allocation chooses from)
//                     [--threads N]   (0 = every core; results do not depend on it)
//                     [--bn-target running|fp]   (BN tuning's reference statistics)
//   fashion_mnist_ptq --plan FILE --json-dir DIR [common arguments]
//                     runs every line "name arguments..." of FILE (blank lines and # comments
//                     skipped) with the common arguments first; the data are loaded and each
//                     model's FP32 accuracy measured once; run `name` of model M writes
//                     DIR/M_name.json. Every line's arguments are checked before anything runs;
//                     a run that fails later stops the plan (earlier runs' JSON files stay).
//
// naive    = round-to-nearest, min/max ranges, every layer at --wbits/--abits
// light    = MSE ranges, first/last layer 8-bit, [bit allocation], BN tuning, bias correction
// advanced = AdaQuant, first/last layer 8-bit, [bit allocation], BN tuning, bias tuning
// Bad arguments (unknown model or pipeline, calibration size 0 or above 60000, bits outside
// [2, 16], an infeasible size ratio) print an error and exit 2 without writing anything.
#include "ptq_network.hpp"

#include <adaquant/pipeline/advanced.hpp>
#include <adaquant/pipeline/light.hpp>
#include <adaquant_runtime/models.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace aq = adaquant;
namespace ex = adaquant::examples;

namespace {
struct args {
  std::string model, pipeline, json, order = "sequential", bn_target = "running";
  int wbits = 4, abits = 4;
  std::optional<double> max_size_ratio;
  std::vector<int> bit_options{2, 3, 4, 8};
  std::size_t calib = 1000, iterations = 0, test_limit = 0, threads = 0;
  std::uint64_t seed = 0;
  bool bn_tuning = true, bias = true, all_layers = false, quiet = false;
  std::string models_dir = ADAQUANT_MODELS_DIR, data_dir = ADAQUANT_FASHION_MNIST_DIR;
};

[[noreturn]] void usage_error(const std::string& msg) {
  throw aq::error(aq::errc::invalid_argument, "fashion_mnist_ptq: " + msg);
}

long long parse_int(const std::string& flag, const std::string& v) {
  std::size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty()) usage_error(flag + ": not an integer: '" + v + "'");
  return x;
}

args parse(const std::vector<std::string>& argv) {
  args a;
  const std::size_t argc = argv.size();
  for (std::size_t i = 0; i < argc; ++i) {
    const std::string f = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(f + " needs a value");
      return argv[++i];
    };
    if (f == "--model")
      a.model = value();
    else if (f == "--pipeline")
      a.pipeline = value();
    else if (f == "--wbits")
      a.wbits = static_cast<int>(parse_int(f, value()));
    else if (f == "--abits")
      a.abits = static_cast<int>(parse_int(f, value()));
    else if (f == "--max-size-ratio") {
      const std::string v = value();
      try {
        std::size_t used = 0;
        a.max_size_ratio = std::stod(v, &used);
        if (used != v.size()) throw std::invalid_argument(v);
      } catch (const std::exception&) {
        usage_error("--max-size-ratio: not a number: '" + v + "'");
      }
    } else if (f == "--calib") {
      const long long c = parse_int(f, value());
      if (c <= 0) usage_error("--calib must be > 0, got " + std::to_string(c));
      a.calib = static_cast<std::size_t>(c);
    } else if (f == "--seed")
      a.seed = static_cast<std::uint64_t>(parse_int(f, value()));
    else if (f == "--json")
      a.json = value();
    else if (f == "--iterations")
      a.iterations = static_cast<std::size_t>(parse_int(f, value()));
    else if (f == "--threads")
      a.threads = static_cast<std::size_t>(parse_int(f, value()));
    else if (f == "--test-limit")
      a.test_limit = static_cast<std::size_t>(parse_int(f, value()));
    else if (f == "--order")
      a.order = value();
    else if (f == "--bit-options") {
      a.bit_options.clear();
      const std::string list = value();
      for (std::size_t p = 0; p <= list.size();) {
        const std::size_t q = std::min(list.find(',', p), list.size());
        a.bit_options.push_back(static_cast<int>(parse_int(f, list.substr(p, q - p))));
        p = q + 1;
      }
    } else if (f == "--models")
      a.models_dir = value();
    else if (f == "--data")
      a.data_dir = value();
    else if (f == "--bn-target")
      a.bn_target = value();
    else if (f == "--no-bn-tuning")
      a.bn_tuning = false;
    else if (f == "--no-bias")
      a.bias = false;
    else if (f == "--all-layers")
      a.all_layers = true;
    else if (f == "--quiet")
      a.quiet = true;
    else
      usage_error("unknown argument '" + f + "'");
  }
  if (a.model != "resnet" && a.model != "mobilenetv2")
    usage_error("--model must be resnet or mobilenetv2, got '" + a.model + "'");
  if (a.pipeline != "naive" && a.pipeline != "light" && a.pipeline != "advanced")
    usage_error("--pipeline must be naive, light or advanced, got '" + a.pipeline + "'");
  if (a.bn_target != "running" && a.bn_target != "fp")
    usage_error("--bn-target must be running or fp, got '" + a.bn_target + "'");
  if (a.order != "sequential" && a.order != "parallel")
    usage_error("--order must be sequential or parallel, got '" + a.order + "'");
  for (int b : {a.wbits, a.abits})
    if (b < 2 || b > 16)
      usage_error("--wbits/--abits must be in [2, 16], got " + std::to_string(b));
  if (a.max_size_ratio && !(*a.max_size_ratio > 0.0 && *a.max_size_ratio <= 1.0))
    usage_error("--max-size-ratio must be in (0, 1]");
  return a;
}

// The pipeline configuration a run's arguments describe: every flag has one place here.
aq::quantization_spec quantization(const args& a) {
  aq::quantization_spec q;
  q.weights = aq::quantizer_spec::weights(a.wbits);
  q.activations = aq::quantizer_spec::activations(a.abits);
  q.first_last_8bit = !a.all_layers && a.pipeline != "naive";
  if (a.pipeline == "naive") q.weights.range = q.activations.range = aq::range_method::min_max;
  return q;
}
std::optional<aq::bit_allocation_budget> bit_allocation(const args& a) {
  if (!a.max_size_ratio) return std::nullopt;
  return aq::bit_allocation_budget{*a.max_size_ratio, a.bit_options};
}
std::optional<aq::bn_tuning_options> bn_tuning(const args& a) {
  if (!a.bn_tuning || a.pipeline == "naive") return std::nullopt;
  return aq::bn_tuning_options{a.bn_target == "fp" ? aq::bn_reference::full_precision
                                                   : aq::bn_reference::running_statistics};
}
aq::light_config light_config(const args& a) {
  aq::light_config c;
  c.quant = quantization(a);
  c.bit_allocation = bit_allocation(a);
  c.bn_tuning = bn_tuning(a);
  c.bias_correction = a.bias && a.pipeline != "naive";
  return c;
}
aq::advanced_config advanced_config(const args& a) {
  aq::advanced_config c;
  c.quant = quantization(a);
  c.adaquant->layer.seed = a.seed;
  if (a.iterations) c.adaquant->layer.iterations = a.iterations;
  c.adaquant->order =
      a.order == "parallel" ? aq::calibration_order::parallel : aq::calibration_order::sequential;
  c.bit_allocation = bit_allocation(a);
  c.bn_tuning = bn_tuning(a);
  c.bias_tuning = a.bias;
  return c;
}

// An output path must be writable before any work starts: its folder exists and takes a file.
void check_writable(const std::string& flag, const std::string& path, bool is_dir = false) {
  if (path.empty()) return;
  const std::filesystem::path p(path);
  const std::filesystem::path dir =
      is_dir ? p : (p.has_parent_path() ? p.parent_path() : std::filesystem::path("."));
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    usage_error(flag + ": folder " + dir.string() + " does not exist");
  const std::filesystem::path probe = dir / ".fashion_mnist_ptq_probe";
  {
    std::ofstream o(probe);
    if (!o) usage_error(flag + ": cannot write in folder " + dir.string());
  }
  std::filesystem::remove(probe, ec);
}

// What runs share: the data, and each model with its FP32 accuracy (measured once).
struct session {
  std::optional<ex::image_dataset> train, test;
  struct model_entry {
    ex::reference_model model;
    ex::eval_result fp32;
  };
  std::map<std::string, model_entry> models;  // by "models dir/name/test limit"
};

int run(const args& a, session& s) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string name = a.model == "resnet" ? "resnet_fm" : "mobilenetv2_fm";
  if (!s.train) s.train = ex::load_fashion_mnist(a.data_dir, "train");
  if (!s.test) s.test = ex::load_fashion_mnist(a.data_dir, "test");
  const ex::image_dataset& train = *s.train;
  const ex::image_dataset& test = *s.test;
  if (a.calib > train.count)
    usage_error("--calib must be at most " + std::to_string(train.count) + ", got " +
                std::to_string(a.calib));

  ex::eval_options eo;
  eo.limit = a.test_limit;
  eo.threads = a.threads;
  const std::string key = a.models_dir + "/" + name + "/" + std::to_string(a.test_limit);
  auto it = s.models.find(key);
  if (it == s.models.end()) {
    session::model_entry e{ex::load_reference_model(a.models_dir, name), {}};
    if (!a.quiet) eo.progress = ex::stderr_progress("fp32 eval");
    e.fp32 = ex::evaluate(e.model.net, test, e.model.norm, eo);
    it = s.models.emplace(key, std::move(e)).first;
  }
  const ex::reference_model& model = it->second.model;
  const ex::eval_result& fp = it->second.fp32;

  ex::ptq_network net(model.net, ex::calibration_images(train, model.norm, a.calib, a.seed),
                     /*loss_samples=*/256,
                     a.threads);

  const aq::execution_context ctx{a.threads, 100, ex::pipeline_progress_bar(a.quiet)};
  const aq::pipeline_report rep = a.pipeline == "advanced"
                                      ? aq::advanced_pipeline(net, advanced_config(a), ctx)
                                      : aq::light_pipeline(net, light_config(a), ctx);
  const bool first_last_8bit = quantization(a).first_last_8bit;

  if (!a.quiet) eo.progress = ex::stderr_progress("quant eval");
  const ex::eval_result qr = ex::evaluate(net.quantized(), test, model.norm, eo);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf(
      "%s %s W%dA%d%s: fp32 top-1 %.2f%%, quantized top-1 %.2f%% (%+.2f), %zu test images, "
      "weights %.1f%% of fp32, %.1f s\n",
      a.model.c_str(), a.pipeline.c_str(), a.wbits, a.abits,
      first_last_8bit ? " (first/last 8-bit)" : "", 100 * fp.accuracy, 100 * qr.accuracy,
      100 * (qr.accuracy - fp.accuracy), qr.images, 100 * rep.size_ratio(), seconds);
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& s : rep.steps) {
    std::printf("  %-16s %8.2f s  %s\n", s.name.c_str(), s.seconds, s.summary.c_str());
    steps.push_back({{"name", s.name}, {"seconds", s.seconds}, {"summary", s.summary}});
  }
  std::fflush(stdout);  // one run at a time in --plan mode, also when piped
  if (!a.json.empty()) {
    const nlohmann::json j = {
        {"model", a.model},
        {"pipeline", a.pipeline},
        {"wbits", a.wbits},
        {"abits", a.abits},
        {"max_size_ratio",
         a.max_size_ratio ? nlohmann::json(*a.max_size_ratio) : nlohmann::json(nullptr)},
        {"first_last_8bit", first_last_8bit},
        {"fp32_top1", fp.accuracy},
        {"quant_top1", qr.accuracy},
        {"test_images", qr.images},
        {"calib", a.calib},
        {"seed", a.seed},
        {"size_ratio", rep.size_ratio()},
        {"layer_weight_bits", rep.weight_bits},
        {"seconds", seconds},
        {"steps", steps}};
    std::ofstream out(a.json);
    out << j.dump(2) << '\n';
    if (!out)
      throw aq::error(aq::errc::invalid_argument,
                      "fashion_mnist_ptq: --json: cannot write " + a.json);
  }
  return 0;
}

// Lines "name arguments..." of a plan file, each parsed with `common` first.
std::vector<std::pair<std::string, args>> read_plan(const std::string& file,
                                                   const std::vector<std::string>& common) {
  std::ifstream in(file);
  if (!in) usage_error("--plan: cannot read " + file);
  std::vector<std::pair<std::string, args>> runs;
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string run_name, w;
    if (!(words >> run_name) || run_name[0] == '#') continue;
    std::vector<std::string> argv = common;
    while (words >> w) argv.push_back(w);
    try {
      runs.emplace_back(run_name, parse(argv));
    } catch (const aq::error& e) {
      std::string why = e.what();  // "adaquant: fashion_mnist_ptq: <reason>"
      const std::string prefix = "fashion_mnist_ptq: ";
      if (const auto at = why.find(prefix); at != std::string::npos)
        why = why.substr(at + prefix.size());
      usage_error("--plan: run '" + run_name + "': " + why);
    }
  }
  if (runs.empty()) usage_error("--plan: " + file + " has no runs");
  return runs;
}

int run_plan(std::vector<std::string> argv) {
  std::string plan, dir;
  std::vector<std::string> common;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "--plan" && i + 1 < argv.size())
      plan = argv[++i];
    else if (argv[i] == "--json-dir" && i + 1 < argv.size())
      dir = argv[++i];
    else
      common.push_back(argv[i]);
  }
  if (plan.empty() || dir.empty()) usage_error("--plan FILE needs --json-dir DIR");
  auto runs = read_plan(plan, common);
  check_writable("--json-dir", dir, true);
  session s;
  s.train = ex::load_fashion_mnist(runs[0].second.data_dir, "train");
  for (const auto& [run_name, a] : runs) {
    if (a.data_dir != runs[0].second.data_dir)
      usage_error("--plan: run '" + run_name + "': --data must be the same for every run");
    if (a.calib > s.train->count)
      usage_error("--plan: run '" + run_name + "': --calib must be at most " +
                  std::to_string(s.train->count) + ", got " + std::to_string(a.calib));
  }
  for (auto& [run_name, a] : runs) {
    a.json = dir + "/" + a.model + "_" + run_name + ".json";
    if (!a.quiet) std::fprintf(stderr, "== %s %s\n", a.model.c_str(), run_name.c_str());
    run(a, s);
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (std::find(args.begin(), args.end(), "--plan") != args.end()) return run_plan(args);
    session s;
    const auto a = parse(args);
    check_writable("--json", a.json);
    return run(a, s);
  } catch (const aq::error& e) {
    std::fprintf(stderr, "\n%s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nfashion_mnist_ptq: %s\n", e.what());
    return 1;
  }
}
