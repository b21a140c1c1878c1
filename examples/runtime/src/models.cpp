#include <adaquant_runtime/models.hpp>

#include <fstream>
#include <set>

namespace adaquant::examples {
namespace {

// Looks tensors up by name and shape, and remembers which ones the graph used.
class weight_source {
 public:
  explicit weight_source(const safetensors_file& f) : f_(f) {}
  tensor get(const std::string& name, const std::vector<std::size_t>& shape) {
    used_.insert(name);
    return f_.get(name, shape);
  }
  std::vector<float> vec(const std::string& name, std::size_t n) { return get(name, {n}).values(); }
  batch_norm_params bn(const std::string& name, std::size_t c) {
    batch_norm_params p;
    p.gamma = vec(name + ".weight", c);
    p.beta = vec(name + ".bias", c);
    p.running_mean = vec(name + ".running_mean", c);
    p.running_var = vec(name + ".running_var", c);
    p.eps = 1e-5f;
    for (std::size_t i = 0; i < c; ++i)
      if (!(p.running_var[i] >= 0.0f))
        detail::fail(errc::corrupt_data, "load model: " + name + ".running_var",
                     "negative or NaN variance");
    return p;
  }
  void check_all_used() const {
    for (const auto& [name, t] : f_.tensors)
      if (!(used_.count(name)))
        detail::fail(errc::corrupt_data, "load model: " + name, "tensor not used by the graph");
  }

 private:
  const safetensors_file& f_;
  std::set<std::string> used_;
};

// conv (no bias) -> BN; returns the BN's value.
std::size_t conv_bn(network& net, weight_source& ws, std::size_t in, const std::string& conv,
                    const std::string& bn, std::size_t cin, std::size_t cout, std::size_t k,
                    std::size_t stride, std::size_t groups) {
  const std::size_t c =
      net.add_conv2d(conv, in, ws.get(conv + ".weight", {cout, cin / groups, k, k}), {},
                     conv_geometry{stride, k / 2, groups});
  return net.add_batch_norm(bn, c, ws.bn(bn, cout));
}

std::size_t as_size(const nlohmann::json& j, const char* key) {
  if (!(j.contains(key) && j[key].is_number_unsigned() && j[key].get<std::size_t>() > 0))
    detail::fail(errc::corrupt_data, std::string("model config: ") + key,
                 "must be a positive integer");
  return j[key].get<std::size_t>();
}

}  // namespace

network build_resnet_fm(const nlohmann::json& config, const safetensors_file& w) {
  weight_source ws(w);
  network net;
  const std::size_t stem = as_size(config, "stem"), blocks = as_size(config, "blocks"),
                    classes = as_size(config, "classes");
  std::size_t x = conv_bn(net, ws, 0, "stem", "stem_bn", 1, stem, 3, 1, 1);
  x = net.add_relu("stem_relu", x);
  std::size_t cin = stem, b = 0;
  for (const auto& wj : config.at("widths")) {
    const std::size_t width = wj.get<std::size_t>();
    for (std::size_t i = 0; i < blocks; ++i, ++b) {
      const std::string p = "blocks." + std::to_string(b) + ".";
      const std::size_t stride = i == 0 ? 2 : 1;
      std::size_t y = conv_bn(net, ws, x, p + "conv1", p + "bn1", cin, width, 3, stride, 1);
      y = net.add_relu(p + "relu1", y);
      y = conv_bn(net, ws, y, p + "conv2", p + "bn2", width, width, 3, 1, 1);
      std::size_t shortcut = x;
      if (stride != 1 || cin != width)
        shortcut = conv_bn(net, ws, x, p + "proj", p + "proj_bn", cin, width, 1, stride, 1);
      x = net.add_relu(p + "relu2", net.add_add(p + "add", y, shortcut));
      cin = width;
    }
  }
  x = net.add_global_avg_pool("pool", x);
  net.add_linear("fc", x, ws.get("fc.weight", {classes, cin}), ws.vec("fc.bias", classes));
  ws.check_all_used();
  return net;
}

network build_mobilenetv2_fm(const nlohmann::json& config, const safetensors_file& w) {
  weight_source ws(w);
  network net;
  const std::size_t stem = as_size(config, "stem"), head = as_size(config, "head"),
                    classes = as_size(config, "classes");
  std::size_t x =
      net.add_relu6("stem_relu", conv_bn(net, ws, 0, "stem", "stem_bn", 1, stem, 3, 1, 1));
  std::size_t cin = stem, b = 0;
  for (const auto& row : config.at("cfg")) {
    if (!(row.is_array() && row.size() == 4))
      detail::fail(errc::corrupt_data, "model config: cfg", "rows must be [t, c, n, s]");
    const auto t = row[0].get<std::size_t>(), c = row[1].get<std::size_t>(),
               n = row[2].get<std::size_t>(), s = row[3].get<std::size_t>();
    for (std::size_t i = 0; i < n; ++i, ++b) {
      const std::string p = "blocks." + std::to_string(b) + ".";
      const std::size_t stride = i == 0 ? s : 1, hidden = cin * t;
      std::size_t y = x;
      if (t != 1)
        y = net.add_relu6(p + "expand_relu",
                          conv_bn(net, ws, y, p + "expand", p + "expand_bn", cin, hidden, 1, 1, 1));
      y = net.add_relu6(p + "dw_relu", conv_bn(net, ws, y, p + "dw", p + "dw_bn", hidden, hidden, 3,
                                               stride, hidden));
      y = conv_bn(net, ws, y, p + "project", p + "project_bn", hidden, c, 1, 1, 1);
      if (stride == 1 && cin == c) y = net.add_add(p + "add", x, y);
      x = y;
      cin = c;
    }
  }
  x = net.add_relu6("head_relu", conv_bn(net, ws, x, "head", "head_bn", cin, head, 1, 1, 1));
  x = net.add_global_avg_pool("pool", x);
  net.add_linear("fc", x, ws.get("fc.weight", {classes, head}), ws.vec("fc.bias", classes));
  ws.check_all_used();
  return net;
}

reference_model load_reference_model(const std::filesystem::path& dir, const std::string& name) {
  const auto json_path = dir / (name + ".json");
  const std::vector<std::uint8_t> text = read_binary_file(json_path);
  reference_model m;
  m.sidecar = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  const std::string w = "load_reference_model: " + json_path.string();
  if (!(m.sidecar.is_object())) detail::fail(errc::corrupt_data, w, "not a JSON object");
  try {
    const auto& s = m.sidecar;
    m.name = s.at("name").get<std::string>();
    m.arch = s.at("arch").get<std::string>();
    m.norm.mean = static_cast<float>(s.at("input").at("mean").get<double>());
    m.norm.std = static_cast<float>(s.at("input").at("std").get<double>());
    m.parameters = s.at("parameters").get<std::size_t>();
    m.macs_per_image = s.at("macs_per_image").get<std::size_t>();
    m.test_images = s.at("test").at("images").get<std::size_t>();
    m.test_correct = s.at("test").at("correct").get<std::size_t>();
    m.test_mean_cross_entropy = s.at("test").at("mean_cross_entropy").get<double>();
    const auto& ref = s.at("reference_logits");
    m.reference_images = ref.at("images").get<std::vector<std::size_t>>();
    const auto rows = ref.at("logits").get<std::vector<std::vector<float>>>();
    if (!(rows.size() == m.reference_images.size() && !rows.empty()))
      detail::fail(errc::corrupt_data, w, "reference logits and images differ in count");
    m.reference_logits = tensor({rows.size(), rows[0].size()});
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (!(rows[i].size() == rows[0].size()))
        detail::fail(errc::corrupt_data, w, "reference logits rows differ in length");
      std::copy(rows[i].begin(), rows[i].end(), m.reference_logits.data() + i * rows[0].size());
    }
    const safetensors_file weights = read_safetensors(dir / (name + ".safetensors"));
    const auto& config = s.at("config");
    if (m.arch == "resnet")
      m.net = build_resnet_fm(config, weights);
    else if (m.arch == "mobilenetv2")
      m.net = build_mobilenetv2_fm(config, weights);
    else
      detail::fail(errc::corrupt_data, w, "unknown arch \"" + m.arch + "\"");
  } catch (const nlohmann::json::exception& e) {
    detail::fail(errc::corrupt_data, w, e.what());
  }
  return m;
}

}  // namespace adaquant::examples
