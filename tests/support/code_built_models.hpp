#pragma once
// The two Fashion-MNIST reference models built in code with the example runtime, from the same
// description as tools/train_reference.py: node names equal the PyTorch module names
// ("blocks.3.conv1", "blocks.3.bn1", ...), so every tensor of models/<name>.safetensors maps to
// one node. The demo and the CLIs load models/<name>.onnx through the importer; these builders
// remain as the second path that the importer is checked against (tests/onnx). Loading fails
// (errc::corrupt_data) on a missing, mis-shaped or unused tensor.

#include <adaquant_runtime/network.hpp>
#include <adaquant_runtime/safetensors.hpp>
#include <adaquant_runtime/sidecar.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>
#include <string>

namespace code_built {

namespace ex = adaquant::examples;

namespace detail {

// Looks tensors up by name and shape, and remembers which ones the graph used.
class weight_source {
 public:
  explicit weight_source(const ex::safetensors_file& f) : f_(f) {}
  ex::tensor get(const std::string& name, const std::vector<std::size_t>& shape) {
    used_.insert(name);
    return f_.get(name, shape);
  }
  std::vector<float> vec(const std::string& name, std::size_t n) { return get(name, {n}).values(); }
  ex::batch_norm_params bn(const std::string& name, std::size_t c) {
    ex::batch_norm_params p;
    p.gamma = vec(name + ".weight", c);
    p.beta = vec(name + ".bias", c);
    p.running_mean = vec(name + ".running_mean", c);
    p.running_var = vec(name + ".running_var", c);
    p.eps = 1e-5f;
    for (std::size_t i = 0; i < c; ++i)
      if (!(p.running_var[i] >= 0.0f))
        adaquant::detail::fail(adaquant::errc::corrupt_data, "load model: " + name + ".running_var",
                               "negative or NaN variance");
    return p;
  }
  void check_all_used() const {
    for (const auto& [name, t] : f_.tensors)
      if (!(used_.count(name)))
        adaquant::detail::fail(adaquant::errc::corrupt_data, "load model: " + name,
                               "tensor not used by the graph");
  }

 private:
  const ex::safetensors_file& f_;
  std::set<std::string> used_;
};

// conv (no bias) -> BN; returns the BN's value.
inline std::size_t conv_bn(ex::network& net, weight_source& ws, std::size_t in,
                           const std::string& conv, const std::string& bn, std::size_t cin,
                           std::size_t cout, std::size_t k, std::size_t stride,
                           std::size_t groups) {
  const std::size_t c =
      net.add_conv2d(conv, in, ws.get(conv + ".weight", {cout, cin / groups, k, k}), {},
                     ex::conv_geometry{stride, k / 2, groups});
  return net.add_batch_norm(bn, c, ws.bn(bn, cout));
}

inline std::size_t as_size(const nlohmann::json& j, const char* key) {
  if (!(j.contains(key) && j[key].is_number_unsigned() && j[key].get<std::size_t>() > 0))
    adaquant::detail::fail(adaquant::errc::corrupt_data, std::string("model config: ") + key,
                           "must be a positive integer");
  return j[key].get<std::size_t>();
}

}  // namespace detail

// ResNet-style: 3x3 stem, stages of basic blocks (3x3-BN-ReLU-3x3-BN + shortcut, ReLU; first
// block of each stage has stride 2 and a 1x1-BN projection), global average pool, linear.
// config: {"stem": 16, "widths": [16, 32, 64], "blocks": 2, "classes": 10}
inline ex::network build_resnet_fm(const nlohmann::json& config, const ex::safetensors_file& w) {
  detail::weight_source ws(w);
  ex::network net;
  const std::size_t stem = detail::as_size(config, "stem"),
                    blocks = detail::as_size(config, "blocks"),
                    classes = detail::as_size(config, "classes");
  std::size_t x = detail::conv_bn(net, ws, 0, "stem", "stem_bn", 1, stem, 3, 1, 1);
  x = net.add_relu("stem_relu", x);
  std::size_t cin = stem, b = 0;
  for (const auto& wj : config.at("widths")) {
    const std::size_t width = wj.get<std::size_t>();
    for (std::size_t i = 0; i < blocks; ++i, ++b) {
      const std::string p = "blocks." + std::to_string(b) + ".";
      const std::size_t stride = i == 0 ? 2 : 1;
      std::size_t y = detail::conv_bn(net, ws, x, p + "conv1", p + "bn1", cin, width, 3, stride, 1);
      y = net.add_relu(p + "relu1", y);
      y = detail::conv_bn(net, ws, y, p + "conv2", p + "bn2", width, width, 3, 1, 1);
      std::size_t shortcut = x;
      if (stride != 1 || cin != width)
        shortcut = detail::conv_bn(net, ws, x, p + "proj", p + "proj_bn", cin, width, 1, stride, 1);
      x = net.add_relu(p + "relu2", net.add_add(p + "add", y, shortcut));
      cin = width;
    }
  }
  x = net.add_global_avg_pool("pool", x);
  net.add_linear("fc", x, ws.get("fc.weight", {classes, cin}), ws.vec("fc.bias", classes));
  ws.check_all_used();
  return net;
}

// MobileNetV2-style: 3x3 stem-BN-ReLU6, inverted residual blocks (1x1 expand-BN-ReLU6 when t>1,
// 3x3 depthwise-BN-ReLU6, 1x1 project-BN, + input when stride 1 and widths match), 1x1 head
// conv-BN-ReLU6, global average pool, linear.
// config: {"stem": 16, "cfg": [[t, c, n, s], ...], "head": 128, "classes": 10}
inline ex::network build_mobilenetv2_fm(const nlohmann::json& config,
                                        const ex::safetensors_file& w) {
  detail::weight_source ws(w);
  ex::network net;
  const std::size_t stem = detail::as_size(config, "stem"), head = detail::as_size(config, "head"),
                    classes = detail::as_size(config, "classes");
  std::size_t x =
      net.add_relu6("stem_relu", detail::conv_bn(net, ws, 0, "stem", "stem_bn", 1, stem, 3, 1, 1));
  std::size_t cin = stem, b = 0;
  for (const auto& row : config.at("cfg")) {
    if (!(row.is_array() && row.size() == 4))
      adaquant::detail::fail(adaquant::errc::corrupt_data, "model config: cfg",
                             "rows must be [t, c, n, s]");
    const auto t = row[0].get<std::size_t>(), c = row[1].get<std::size_t>(),
               n = row[2].get<std::size_t>(), s = row[3].get<std::size_t>();
    for (std::size_t i = 0; i < n; ++i, ++b) {
      const std::string p = "blocks." + std::to_string(b) + ".";
      const std::size_t stride = i == 0 ? s : 1, hidden = cin * t;
      std::size_t y = x;
      if (t != 1)
        y = net.add_relu6(
            p + "expand_relu",
            detail::conv_bn(net, ws, y, p + "expand", p + "expand_bn", cin, hidden, 1, 1, 1));
      y = net.add_relu6(p + "dw_relu", detail::conv_bn(net, ws, y, p + "dw", p + "dw_bn", hidden,
                                                       hidden, 3, stride, hidden));
      y = detail::conv_bn(net, ws, y, p + "project", p + "project_bn", hidden, c, 1, 1, 1);
      if (stride == 1 && cin == c) y = net.add_add(p + "add", x, y);
      x = y;
      cin = c;
    }
  }
  x = net.add_relu6("head_relu",
                    detail::conv_bn(net, ws, x, "head", "head_bn", cin, head, 1, 1, 1));
  x = net.add_global_avg_pool("pool", x);
  net.add_linear("fc", x, ws.get("fc.weight", {classes, head}), ws.vec("fc.bias", classes));
  ws.check_all_used();
  return net;
}

// The model of `sidecar` built from <dir>/<name>.safetensors and the sidecar's config.
inline ex::network load(const std::filesystem::path& dir, const ex::reference_sidecar& sidecar) {
  const std::string w = "code_built::load: " + sidecar.name;
  const ex::safetensors_file weights = ex::read_safetensors(dir / (sidecar.name + ".safetensors"));
  try {
    const auto& config = sidecar.json.at("config");
    if (sidecar.arch == "resnet") return build_resnet_fm(config, weights);
    if (sidecar.arch == "mobilenetv2") return build_mobilenetv2_fm(config, weights);
  } catch (const nlohmann::json::exception& e) {
    adaquant::detail::fail(adaquant::errc::corrupt_data, w, e.what());
  }
  adaquant::detail::fail(adaquant::errc::corrupt_data, w, "unknown arch \"" + sidecar.arch + "\"");
}

}  // namespace code_built
