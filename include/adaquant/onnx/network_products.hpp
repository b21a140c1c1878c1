#pragma once
// onnx_network's activation products: finding them and estimating their operand quantizers
// (the contract is on onnx_network and in onnx/products.hpp).

#include <adaquant/onnx/network.hpp>

namespace adaquant::onnx {

inline void onnx_network::find_products(const std::optional<activation_products_options>& opt) {
  if (!opt) return;
  const std::string where = fp_.source() + ": network_options::activation_products";
  opt->spec.validate(where + ".spec");
  if (opt->spec.gran.type != granularity::kind::per_tensor)
    adaquant::detail::fail(errc::invalid_argument, where + ".spec.gran",
                           "operand quantizers are per tensor");
  const std::int64_t tokens =
      mask_input_ == graph::npos ? 0 : calibration_[mask_input_].shape.at(1);
  products_ = detail::find_activation_products(fp_, tokens);
  if (products_.empty())
    adaquant::detail::fail(errc::invalid_argument, where,
                           "the model has no MatMul of two activations of rank >= 3 (a MatMul "
                           "with a constant weight is a layer)");
  product_spec_ = opt->spec;
  for (activation_product& p : products_) p.bits = opt->spec.scheme.bits;
  for (const std::string& part : opt->eight_bit) {
    bool found = false;
    for (activation_product& p : products_)
      if (p.name.size() >= part.size() && p.name.ends_with(part) && !part.empty()) {
        p.bits = 8;
        found = true;
      }
    if (!found)
      adaquant::detail::fail(errc::invalid_argument, where + ".eight_bit",
                             "no product's node name ends with '" + part + "'");
  }
}

inline void onnx_network::estimate_activation_products(std::size_t through) {
  for (activation_product& p : products_)
    if (p.node <= through && !p.estimated) estimate_product(p);
}

inline void onnx_network::estimate_product(activation_product& p) {
  const node& n = q_.at(p.node);
  const int av = n.inputs[0], bv = n.inputs[1];
  constexpr std::size_t batch = 16;  // fixed: the values' order never depends on the threads
  const std::size_t chunks = (samples_ + batch - 1) / batch;
  const std::size_t tokens =
      mask_input_ == graph::npos ? 0 : static_cast<std::size_t>(calibration_[mask_input_].shape[1]);
  std::vector<std::vector<float>> va(chunks), vb(chunks);
  parallel_for(chunks, threads_, [&](std::size_t c) {
    const std::size_t b = c * batch, e = std::min(samples_, b + batch);
    const std::vector<tensor> v = q_.run_from(q_.start(calibration_items(b, e)), p.node, {av, bv});
    const std::int64_t* mask = tokens ? calibration_[mask_input_].i.data() + b * tokens : nullptr;
    detail::append_valid(v[0], p.token_axis_a, mask, tokens, va[c]);
    detail::append_valid(v[1], p.token_axis_b, mask, tokens, vb[c]);
  });
  const quantizer_spec spec = product_spec_.with_bits(p.bits);
  const auto params = [&](std::vector<std::vector<float>>& parts, const char* operand) {
    std::vector<float> all;
    for (auto& part : parts) {
      all.insert(all.end(), part.begin(), part.end());
      part = {};
    }
    if (all.empty())
      adaquant::detail::fail(errc::empty_input,
                             fp_.source() + ": product \"" + p.name + "\", operand " + operand,
                             "no value outside padding over the calibration set");
    return estimate_tensor_params(tensor_view<const float>(all.data(), {all.size()}), spec,
                                  zero_range::use_epsilon);
  };
  p.a = params(va, "A");
  p.b = params(vb, "B");
  p.estimated = true;
  q_.at(p.node).operands = operand_quantizers{p.a, p.b, spec.rounding};
  for (auto& [key, pass] : passes_)
    if (std::get<0>(key) == capture_mode::quantized) pass.invalidate_from(p.node);
  for (resumable_pass& r : loss_passes_) r.invalidate_from(p.node);
}

}  // namespace adaquant::onnx
