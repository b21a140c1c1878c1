// fashion_mnist_ptq: quantize a reference model with the naive, light or advanced pipeline and
// measure top-1 accuracy on the full 10k Fashion-MNIST test set. The model is
// <models>/<name>.onnx (resnet_fm or mobilenetv2_fm) loaded through the adaquant::onnx importer;
// images are normalised as its sidecar <models>/<name>.json says (what the ONNX input expects).
// Simulated rounding is PyTorch's (adaquant_ptq defaults to ONNX's).
//
//   fashion_mnist_ptq --model resnet|mobilenetv2 --pipeline naive|light|advanced
//                     [--wbits 4] [--abits 4] [--max-size-ratio R] [--calib 1000] [--seed 0]
//                     (--seed: AdaQuant's, and the choice of the --calib training images)
//                     [--json FILE] [--iterations N] [--test-limit N] [--no-bn-tuning]
//                     [--no-bias] [--all-layers] [--order sequential|parallel] [--quiet]
//                     [--bit-options 2,3,4,8]   (weight bits bit allocation chooses from)
//                     [--bit-rounds 4]   (loss tables bit allocation measures; 1 = one-shot)
//                     [--no-recalibrate-allocation]   (advanced: chosen bits not calibrated
//                                                     again in sequential order)
//                     [--threads N]   (0 = every core; results do not depend on it)
//                     [--bn-target running|fp]   (BN tuning's reference statistics)
//                     [--qdrop P]   (AdaQuant's QDrop probability in [0, 1]; default by bits)
//                     [--lr-weight R] [--lr-quant R]   (AdaQuant's relative rates)
//                     [--batch-size N] [--step-macs X]   (AdaQuant's samples per step, and
//                                                        their bound by multiply-adds)
//                     [--weight-rounding learned_step|adaround]   (default by bits)
//                     [--reconstruction layer|block]   (AdaQuant per layer or per block;
//                                                      default by bits)
//                     [--blocks auto|N|FIRST..LAST,...]   (which blocks: automatic (without
//                                                         --reconstruction: by bits), runs of
//                                                         up to N layers, or named)
//                     [--adaround-lambda L]   (AdaRound's regulariser weight, >= 0)
//                     [--inner-weight W]   (block reconstruction: weight of each layer's error
//                                          inside the block, >= 0; default by bits)
//                     [--trial-iterations N]   (block reconstruction: a second run of each
//                                              block, kept when the network's calibration loss
//                                              is lower; 0: none; default by block length)
//                     [--loss-samples N]   (calibration images of bit allocation's loss;
//                                           default: every calibration image)
//                     [--8bit-layers PART,...]   (layers whose ONNX node name contains a part
//                                                 stay at 8 bits: what a bit-width hurts)
//                     [--models DIR] [--data DIR]   (default: the repository's models/, Debian's
//                                                    Fashion-MNIST)
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
#include <adaquant/core/parallel.hpp>
#include <adaquant/onnx/network.hpp>
#include <adaquant_runtime/cli.hpp>
#include <adaquant_runtime/evaluate.hpp>
#include <adaquant_runtime/idx.hpp>
#include <adaquant_runtime/sidecar.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace aq = adaquant;
namespace ax = adaquant::onnx;
namespace ex = adaquant::examples;

namespace {
const ex::cli cli{"fashion_mnist_ptq"};

struct args {
  std::string model, json;
  ex::pipeline_settings settings;  // --pipeline and what it computes
  std::size_t calib = 1000, test_limit = 0, threads = 0;
  // Bit allocation's loss: the first N calibration images; empty: all of them (--calib).
  std::optional<std::size_t> loss_samples;
  bool quiet = false;
  std::string models_dir = ADAQUANT_MODELS_DIR, data_dir = ADAQUANT_FASHION_MNIST_DIR;
};

args parse(const std::vector<std::string>& argv) {
  args a;
  ex::pipeline_settings& s = a.settings;
  const std::size_t argc = argv.size();
  for (std::size_t i = 0; i < argc; ++i) {
    const std::string f = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) cli.fail(f + " needs a value");
      return argv[++i];
    };
    if (f == "--model")
      a.model = value();
    else if (f == "--calib") {
      const long long c = cli.to_int(f, value());
      if (c <= 0) cli.fail("--calib must be > 0, got " + std::to_string(c));
      a.calib = static_cast<std::size_t>(c);
    } else if (f == "--json")
      a.json = value();
    else if (f == "--loss-samples")
      a.loss_samples = cli.to_count(f, value());
    else if (f == "--threads")
      a.threads = cli.to_count(f, value());
    else if (f == "--test-limit")
      a.test_limit = cli.to_count(f, value());
    else if (f == "--models")
      a.models_dir = value();
    else if (f == "--data")
      a.data_dir = value();
    else if (f == "--quiet")
      a.quiet = true;
    else if (!ex::parse_pipeline_flag(cli, f, value, s))
      cli.fail("unknown argument '" + f + "'");
  }
  if (a.model != "resnet" && a.model != "mobilenetv2")
    cli.fail("--model must be resnet or mobilenetv2, got '" + a.model + "'");
  ex::check_pipeline_settings(cli, s);
  if (a.loss_samples && *a.loss_samples == 0) cli.fail("--loss-samples must be > 0");
  if (a.loss_samples && *a.loss_samples > a.calib)
    cli.fail("--loss-samples must be at most --calib (" + std::to_string(a.calib) + "), got " +
             std::to_string(*a.loss_samples));
  return a;
}

// Normalised images [n, 1, 28, 28] as the ONNX model's input.
ax::tensor onnx_input(ex::tensor x) {
  ax::shape_t shape;
  for (const std::size_t d : x.shape()) shape.push_back(static_cast<std::int64_t>(d));
  return ax::tensor(std::move(shape), std::move(x.values()));
}

// What runs share: the data, and per model its ONNX file, normalisation, test images and FP32
// accuracy (measured once).
struct session {
  std::optional<ex::image_dataset> train, test;
  struct model_entry {
    ax::model model;
    ex::normalisation norm;
    ax::tensor test_images;  // the first --test-limit (0: all), normalised
    std::vector<std::int64_t> labels;
    std::optional<ax::eval_result> fp32;
  };
  std::map<std::string, model_entry> models;  // by "models dir/name/test limit"
};

// Top-1 on the model's test images, in slices so that progress shows; a slice is a whole number
// of evaluation chunks, so the chunks (and the result) are those of one call over all images.
ax::eval_result evaluate(const ax::onnx_network& net, const session::model_entry& m, bool quantized,
                         const args& a, const char* label) {
  ax::eval_options o;
  o.threads = a.threads;
  o.quantized = quantized;
  std::function<void(std::size_t, std::size_t)> progress;
  if (!a.quiet) progress = ex::stderr_progress(label);
  const std::size_t n = m.labels.size();
  const std::size_t slice = o.batch * std::max<std::size_t>(10, aq::resolve_threads(a.threads));
  ax::eval_result r;
  r.samples = n;
  for (std::size_t b = 0; b < n; b += slice) {
    const std::size_t e = std::min(n, b + slice);
    r.correct +=
        net.evaluate({m.test_images.items(b, e)}, std::span(m.labels).subspan(b, e - b), o).correct;
    if (progress) progress(e, n);
  }
  r.accuracy = static_cast<double>(r.correct) / static_cast<double>(n);
  return r;
}

int run(const args& a, session& s) {
  const auto t0 = std::chrono::steady_clock::now();
  const ex::pipeline_settings& p = a.settings;
  const std::string name = a.model == "resnet" ? "resnet_fm" : "mobilenetv2_fm";
  if (!s.train) s.train = ex::load_fashion_mnist(a.data_dir, "train");
  if (!s.test) s.test = ex::load_fashion_mnist(a.data_dir, "test");
  const ex::image_dataset& train = *s.train;
  const ex::image_dataset& test = *s.test;
  if (a.calib > train.count)
    cli.fail("--calib must be at most " + std::to_string(train.count) + ", got " +
             std::to_string(a.calib));

  const std::string key = a.models_dir + "/" + name + "/" + std::to_string(a.test_limit);
  auto it = s.models.find(key);
  if (it == s.models.end()) {
    const std::filesystem::path dir(a.models_dir);
    const ex::normalisation norm = ex::load_reference_sidecar(dir, name).norm;
    const std::size_t n = a.test_limit == 0 ? test.count : std::min(a.test_limit, test.count);
    session::model_entry e{
        ax::load_model(dir / (name + ".onnx")),
        norm,
        onnx_input(ex::make_batch(test, 0, n, norm)),
        {test.labels.begin(), test.labels.begin() + static_cast<std::ptrdiff_t>(n)},
        {}};
    it = s.models.emplace(key, std::move(e)).first;
  }
  session::model_entry& m = it->second;

  ax::network_options no;
  no.loss_samples = a.loss_samples.value_or(a.calib);
  no.threads = a.threads;
  ax::onnx_network net(m.model,
                       {onnx_input(ex::calibration_images(train, m.norm, a.calib, p.seed))}, no);
  if (!m.fp32) m.fp32 = evaluate(net, m, false, a, "fp32 eval");
  const ax::eval_result& fp = *m.fp32;

  const aq::execution_context ctx{a.threads, 100, ex::pipeline_progress_bar(a.quiet)};
  const std::vector<aq::layer_desc> layers = net.quantizable_layers();
  const aq::pipeline_report rep = ex::run_pipeline(
      net, p, ctx,
      ex::named_blocks(cli, p, [&](const std::string& n) { return net.layer_named(n); }),
      ex::eight_bit_positions(cli, p, layers.size(), [&](std::size_t i) {
        return net.full_precision().at(layers[i].id).name;
      }));
  const bool first_last_8bit = ex::quantization_of(p).first_last_8bit;

  const ax::eval_result qr = evaluate(net, m, true, a, "quant eval");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "%s %s W%dA%d%s: fp32 top-1 %.2f%%, quantized top-1 %.2f%% (%+.2f), %zu test images, "
      "weights %.1f%% of fp32, %.1f s\n",
      a.model.c_str(), p.pipeline.c_str(), p.wbits, p.abits,
      first_last_8bit ? " (first/last 8-bit)" : "", 100 * fp.accuracy, 100 * qr.accuracy,
      100 * (qr.accuracy - fp.accuracy), qr.samples, 100 * rep.size_ratio(), seconds);
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& step : rep.steps) {
    std::printf("  %-16s %8.2f s  %s\n", step.name.c_str(), step.seconds, step.summary.c_str());
    steps.push_back({{"name", step.name}, {"seconds", step.seconds}, {"summary", step.summary}});
  }
  std::fflush(stdout);  // one run at a time in --plan mode, also when piped
  if (!a.json.empty()) {
    const nlohmann::json j = {
        {"model", a.model},
        {"pipeline", p.pipeline},
        {"wbits", p.wbits},
        {"abits", p.abits},
        {"max_size_ratio",
         p.max_size_ratio ? nlohmann::json(*p.max_size_ratio) : nlohmann::json(nullptr)},
        {"first_last_8bit", first_last_8bit},
        {"eight_bit_layers", p.eight_bit_layers},
        {"fp32_top1", fp.accuracy},
        {"quant_top1", qr.accuracy},
        {"test_images", qr.samples},
        {"calib", a.calib},
        {"seed", p.seed},
        {"qdrop", p.qdrop ? nlohmann::json(*p.qdrop) : nlohmann::json("default")},
        {"weight_rounding", p.weight_rounding.empty() ? "default" : p.weight_rounding},
        {"reconstruction", p.reconstruction.empty() ? "default" : p.reconstruction},
        {"blocks", p.blocks},
        {"adaround_lambda",
         p.adaround_lambda ? nlohmann::json(*p.adaround_lambda) : nlohmann::json("default")},
        {"inner_weight",
         p.inner_weight ? nlohmann::json(*p.inner_weight) : nlohmann::json("default")},
        {"trial_iterations",
         p.trial_iterations ? nlohmann::json(*p.trial_iterations) : nlohmann::json("default")},
        {"loss_samples", a.loss_samples.value_or(a.calib)},
        {"size_ratio", rep.size_ratio()},
        {"layer_weight_bits", rep.weight_bits},
        {"seconds", seconds},
        {"steps", steps}};
    std::ofstream out(a.json);
    out << j.dump(2) << '\n';
    if (!out) cli.fail("--json: cannot write " + a.json);
  }
  return 0;
}

// Lines "name arguments..." of a plan file, each parsed with `common` first.
std::vector<std::pair<std::string, args>> read_plan(const std::string& file,
                                                    const std::vector<std::string>& common) {
  std::ifstream in(file);
  if (!in) cli.fail("--plan: cannot read " + file);
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
      const std::string prefix = cli.tool + ": ";
      if (const auto at = why.find(prefix); at != std::string::npos)
        why = why.substr(at + prefix.size());
      cli.fail("--plan: run '" + run_name + "': " + why);
    }
  }
  if (runs.empty()) cli.fail("--plan: " + file + " has no runs");
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
  if (plan.empty() || dir.empty()) cli.fail("--plan FILE needs --json-dir DIR");
  auto runs = read_plan(plan, common);
  cli.check_writable_folder("--json-dir", dir);
  session s;
  s.train = ex::load_fashion_mnist(runs[0].second.data_dir, "train");
  for (const auto& [run_name, a] : runs) {
    if (a.data_dir != runs[0].second.data_dir)
      cli.fail("--plan: run '" + run_name + "': --data must be the same for every run");
    if (a.calib > s.train->count)
      cli.fail("--plan: run '" + run_name + "': --calib must be at most " +
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
    cli.check_writable_file("--json", a.json);
    return run(a, s);
  } catch (const aq::error& e) {
    std::fprintf(stderr, "\n%s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nfashion_mnist_ptq: %s\n", e.what());
    return 1;
  }
}
