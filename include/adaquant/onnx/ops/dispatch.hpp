#pragma once
// run_node: one node's outputs from its inputs, by op type.

#include <adaquant/onnx/ops/conv.hpp>
#include <adaquant/onnx/ops/dense.hpp>
#include <adaquant/onnx/ops/elementwise.hpp>
#include <adaquant/onnx/ops/shape.hpp>

namespace adaquant::onnx::detail {

// `in` holds one pointer per node input (nullptr: absent optional input). `out` receives one
// tensor per node output. `mv`, when given, is input 0's storage (read by nothing else
// afterwards): elementwise and reshaping ops reuse it instead of copying.
inline void run_node(const op_env& env, const std::vector<const tensor*>& in,
                     std::vector<tensor>& out, tensor* mv = nullptr) {
  const node& n = env.n;
  const std::string& op = n.op_type;
  out.assign(std::max<std::size_t>(n.outputs.size(), 1), tensor());
  const auto need = [&](std::size_t k) -> const tensor& {
    if (!(k < in.size() && in[k]))
      env.fail(errc::shape_mismatch, "input " + std::to_string(k) + " is missing");
    return *in[k];
  };
  const auto extra_outputs = [&](std::size_t allowed) {
    for (std::size_t k = allowed; k < n.outputs.size(); ++k)
      if (n.outputs[k] >= 0) env.fail_unsupported("output " + std::to_string(k) + " is not supported");
  };
  const auto bias_of = [&](std::size_t k, std::int64_t channels) -> const float* {
    if (!(k < in.size() && in[k])) return nullptr;
    if (!(in[k]->floating() && in[k]->size() == static_cast<std::size_t>(channels)))
      env.fail(errc::shape_mismatch, "bias must hold " + std::to_string(channels) + " floats");
    return in[k]->f.data();
  };
  if (op != "Constant" && op != "ConstantOfShape") need(0);  // every other op reads input 0
  if (op == "Conv") {
    extra_outputs(1);
    if (n.layer) {
      conv(env, need(0), n.layer->weight, n.layer->bias.data(), out[0], n.layer->input_quant,
           n.layer->input_rounding);
    } else {
      const tensor& w = need(1);
      conv(env, need(0), w, bias_of(2, w.rank() ? w.shape[0] : 0), out[0]);
    }
  } else if (op == "ConvTranspose") {
    extra_outputs(1);
    const tensor& w = need(1);
    const std::int64_t o = w.rank() > 1 ? w.shape[1] * n.attr_int("group", 1) : 0;
    conv_transpose(env, need(0), w, bias_of(2, o), out[0]);
  } else if (op == "Gemm" || op == "MatMul") {
    extra_outputs(1);
    if (n.layer)
      linear_rows(env, need(0), *n.layer, out[0]);
    else if (op == "Gemm")
      gemm(env, need(0), need(1), in.size() > 2 ? in[2] : nullptr, out[0]);
    else if (n.operands) {  // both operands fake-quantized first
      tensor a = env.fake_quant_copy(need(0), n.operands->a, n.operands->rounding);
      tensor b = env.fake_quant_copy(need(1), n.operands->b, n.operands->rounding);
      matmul(env, a, b, out[0]);
      env.recycle(a);
      env.recycle(b);
    } else {
      matmul(env, need(0), need(1), out[0]);
    }
  } else if (op == "BatchNormalization") {
    extra_outputs(1);
    batch_norm(env, in, out[0], mv);
  } else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow") {
    binary_op(env, need(0), need(1), out[0], mv);
  } else if (op == "Relu" || op == "Sigmoid" || op == "Tanh" || op == "Erf" || op == "Sqrt" ||
             op == "Neg" || op == "Exp" || op == "Log" || op == "LeakyRelu" ||
             op == "HardSigmoid" || op == "HardSwish" || op == "Clip" || op == "Identity") {
    need(0);
    unary_op(env, in, out[0], mv);
  } else if (op == "Dropout") {
    need(0);
    if (env.opset >= 12 && in.size() > 2 && in[2] && in[2]->size() == 1 && in[2]->as_int(0) != 0)
      env.fail_unsupported("training_mode true");
    unary_op(env, in, out[0]);
    if (out.size() > 1) {
      out[1] = env.make(dtype::boolean, in[0]->shape);
      std::fill(out[1].i.begin(), out[1].i.end(), 1);
    }
  } else if (op == "ReduceMean") {
    reduce_mean(env, in, out[0]);
  } else if (op == "Softmax") {
    softmax(env, need(0), out[0], mv);
  } else if (op == "LayerNormalization") {
    std::vector<tensor> o3;
    need(0);
    layer_norm(env, in, o3, mv);
    for (std::size_t k = 0; k < out.size() && k < 3; ++k) out[k] = std::move(o3[k]);
  } else if (op == "GlobalAveragePool" || op == "GlobalMaxPool") {
    global_pool(env, need(0), out[0]);
  } else if (op == "AveragePool" || op == "MaxPool") {
    extra_outputs(1);
    pool(env, need(0), out[0]);
  } else if (op == "Flatten") {
    flatten(env, need(0), out[0], mv);
  } else if (op == "Reshape") {
    need(0);
    reshape(env, *in[0], in.size() > 1 ? in[1] : nullptr, out[0], mv);
  } else if (op == "Transpose") {
    transpose(env, need(0), out[0]);
  } else if (op == "Squeeze") {
    need(0);
    squeeze(env, in, out[0], mv);
  } else if (op == "Unsqueeze") {
    need(0);
    unsqueeze(env, in, out[0], mv);
  } else if (op == "Concat") {
    concat(env, in, out[0]);
  } else if (op == "Slice") {
    need(0);
    slice(env, in, out[0]);
  } else if (op == "Gather") {
    gather(env, need(0), need(1), out[0]);
  } else if (op == "Shape") {
    shape_of(env, need(0), out[0]);
  } else if (op == "Cast") {
    cast(env, need(0), out[0]);
  } else if (op == "Constant") {
    out[0] = constant_value(env);
  } else if (op == "ConstantOfShape") {
    constant_of_shape(env, in.empty() ? nullptr : in[0], out[0]);
  } else if (op == "Resize") {
    need(0);
    resize(env, in, out[0]);
  } else {
    env.fail_unsupported("op type " + op + " is not supported");
  }
}

}  // namespace adaquant::onnx::detail
