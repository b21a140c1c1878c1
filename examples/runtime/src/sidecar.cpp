#include <adaquant_runtime/sidecar.hpp>

#include <algorithm>

namespace adaquant::examples {

reference_sidecar load_reference_sidecar(const std::filesystem::path& dir,
                                         const std::string& name) {
  const auto json_path = dir / (name + ".json");
  const std::vector<std::uint8_t> text = read_binary_file(json_path);
  reference_sidecar m;
  m.json = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  const std::string w = "load_reference_sidecar: " + json_path.string();
  if (!(m.json.is_object())) detail::fail(errc::corrupt_data, w, "not a JSON object");
  try {
    const auto& s = m.json;
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
  } catch (const nlohmann::json::exception& e) {
    detail::fail(errc::corrupt_data, w, e.what());
  }
  return m;
}

}  // namespace adaquant::examples
