// adaquant_ptq: quantize any ONNX CNN with the naive, light or advanced pipeline and write a QDQ
// ONNX model (plus, optionally, an encodings JSON and a run report). `adaquant_ptq --help` prints
// the usage with every default. Bad input (unknown or unsupported op, malformed file, calibration
// data that does not fit the model input, bits out of range, infeasible budget, unwritable output)
// exits 2 with a one-line error and writes nothing; outputs are written only at the end, each
// atomically (temporary file, fsync, rename). --checkpoint DIR saves each finished unit of work,
// so a killed run resumes where it stopped (adaquant_runtime/checkpoint_dir.hpp).
// The flags are in args.hpp, reading the input data in inputs.hpp; this file runs the pipeline,
// exports and reports.
#include "args.hpp"
#include "inputs.hpp"
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
#include <span>
#include <string>
#include <vector>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace adaquant_ptq {
namespace {

namespace aq = adaquant;
namespace fs = std::filesystem;

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
  // Sequential AdaQuant reads a layer's inputs from the network's kept state (no second copy).
  std::optional<std::vector<std::span<const float>>> held_inputs(std::size_t id, std::size_t first,
                                                                 std::size_t count) const {
    return net.held_inputs(id, first, count);
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
static_assert(requires(aq::detail::recording_network<recording_network> & r) {
  r.held_inputs(0, 0, 1);  // the pipeline's own wrapper passes the lending on
});

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
  id.push_back({"argument", "--embedding-bits", std::to_string(a.embedding_bits)});
  // Not a flag, but where a step splits into chunks changes AdaQuant's results (summed in another
  // order than one chunk's): a checkpoint written under another value is refused.
  id.push_back({"argument", "adaquant_options::chunk_macs",
                std::to_string(aq::adaquant_options{}.chunk_macs)});
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
  // The network keeps the only copy of the calibration inputs. The ModelProto (another copy of
  // the weights) is dropped for the run and read again for the export, from the same bytes.
  const std::string model_sha256 = ex::sha256_file(a.model);
  ax::onnx_network net(std::move(m), std::move(calib), no);
  if (!a.fp32_only) net.drop_model_proto();
  // Advanced pipeline: while quantized passes hold state, a full-precision pass keeps at most a
  // quarter of the widest layer's inputs and outputs per sample and recomputes from there (same
  // results): on ResNet-50 its state then stays out of the first stage's wide tensors, and bias
  // tuning stays within the memory bound (README, Scale). The light pipeline stays within it at
  // the network's default (the largest layer input), and the quarter cost its bias correction 70 %
  // more time on ResNet-50.
  if (s.pipeline == "advanced") {
    std::size_t widest = 0;
    for (const aq::layer_desc& d : net.quantizable_layers())
      widest = std::max(widest, d.geometry.input_per_sample() + d.geometry.output_per_sample());
    net.set_full_precision_keep_limit(std::min(net.full_precision_keep_limit(), widest / 4));
  }
  const std::map<std::string, std::size_t> kept_float = float_nodes(net);
  if (!a.fp32_only && net.quantizable_layers().empty()) {
    std::string why;
    for (const auto& [reason, count] : kept_float)
      why += "; " + std::to_string(count) + " x " + reason;
    throw aq::error(aq::errc::invalid_argument,
                    "adaquant_ptq: " + a.model + ": no quantizable layer" + why);
  }
  const auto blocks_named =
      ex::named_blocks(cli, s, [&](const std::string& name) { return net.layer_named(name); });
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
  const std::vector<aq::layer_desc> layers = net.quantizable_layers();
  q8.fixed_8bit_layers = ex::eight_bit_positions(cli, s, layers.size(), [&](std::size_t i) {
    return net.full_precision().at(layers[i].id).name;
  });
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
    aq::advanced_config c = ex::advanced_config_of(s, blocks_named);
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
  const ax::export_parts parts{exported, embeddings, products};
  if (ex::sha256_file(a.model) != model_sha256)
    throw aq::error(aq::errc::corrupt_data,
                    "adaquant_ptq: " + a.model +
                        ": the model file changed during the run; the export needs the file "
                        "that was calibrated");
  const ::onnx::ModelProto original = std::move(ax::load_model(a.model).proto);
  ax::export_qdq(original, parts, eo, out);

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
  if (!a.encodings.empty()) ax::write_encodings(original, parts, a.encodings, eo);
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
        {"model", {{"path", a.model}, {"sha256", model_sha256}}},
        {"calib", {{"files", files(calib_files)}, {"samples", calib_samples}}},
        {"settings",
         {{"pipeline", s.pipeline},
          {"wbits", s.wbits},
          {"abits", s.abits},
          {"first_last_8bit", quant.first_last_8bit},
          {"eight_bit_layers", s.eight_bit_layers},
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
          {"recalibrate_allocation", s.max_size_ratio && s.pipeline == "advanced"
                                         ? nlohmann::json(s.recalibrate_allocation)
                                         : nlohmann::json(nullptr)},
          {"loss_samples", no.loss_samples},
          {"iterations",
           s.pipeline == "advanced" ? nlohmann::json(s.iterations) : nlohmann::json(nullptr)},
          {"order", s.order},
          {"reconstruction", s.reconstruction.empty() ? "default" : s.reconstruction},
          {"blocks", s.blocks},
          {"seed", s.seed},
          {"qdrop", s.qdrop ? nlohmann::json(*s.qdrop) : nlohmann::json("default")},
          {"weight_rounding", s.weight_rounding.empty() ? "default" : s.weight_rounding},
          {"adaround_lambda",
           s.adaround_lambda ? nlohmann::json(*s.adaround_lambda) : nlohmann::json("default")},
          {"inner_weight",
           s.inner_weight ? nlohmann::json(*s.inner_weight) : nlohmann::json("default")},
          {"trial_iterations",
           s.trial_iterations ? nlohmann::json(*s.trial_iterations) : nlohmann::json("default")},
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
}  // namespace adaquant_ptq

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Buffers from 1 MiB up (activations) get their own mappings, returned to the system when
  // freed; glibc's heaps would keep freed ones resident, and its default threshold rises to
  // 32 MiB after the first large free (on ResNet-50 the peak RSS stood well above the live data).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  try {
    return adaquant_ptq::run(adaquant_ptq::parse(argc, argv));
  } catch (const adaquant::error& e) {
    std::fprintf(stderr, "\n%s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nadaquant_ptq: %s\n", e.what());
    return 1;
  }
}
