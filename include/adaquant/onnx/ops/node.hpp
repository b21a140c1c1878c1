#pragma once
// A node of a compiled graph, its attributes, and what every op kernel shares: the error helper
// naming the file and node, and the limits that bound what an untrusted model may allocate.

#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/onnx/load.hpp>
#include <adaquant/quant/quant_params.hpp>
#include <adaquant/quant/rounding.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace adaquant::onnx {

struct attribute {
  enum class kind { none, f, i, s, t, floats, ints } type = kind::none;
  float f = 0.0f;
  std::int64_t i = 0;
  std::string s;
  tensor t;
  std::vector<float> floats;
  std::vector<std::int64_t> ints;
};

// Bounds on what executing a model may allocate or compute (an untrusted model declares the
// sizes of ConstantOfShape, Resize, ... itself). Exceeding one is errc::invalid_argument.
struct exec_limits {
  std::size_t max_elements = std::size_t{1} << 30;  // per tensor
  double max_macs = 1e13;                           // per op call
};

// What quantization attached to a layer node (Conv, Gemm or MatMul with a constant weight).
struct layer_params {
  tensor weight;                   // float32, [O, I/g, k...] (Conv) or [O, I] (Gemm, MatMul)
  std::vector<float> bias;         // O values (zeros when the node has none)
  std::optional<quant_params> input_quant;  // fake-quantize the input (quantized copies only)
  rounding_mode input_rounding = rounding_mode::pytorch;  // how input_quant rounds
  // Where the parameters came from in the ONNX file (for exporters): the weight and bias
  // initializers (bias empty when the node had none) and the folded BatchNormalization node.
  std::string weight_initializer, bias_initializer, folded_batch_norm_node;
  bool weight_transposed = false;  // Gemm transB=0 / MatMul: weight is the initializer transposed
  float weight_scale = 1.0f;       // Gemm alpha folded into the weight
};

// out.f (sized as x.f) = x.f fake-quantized per tensor with q, rounding as `r` says (a layer's
// input quantizer; op_env::fake_quant_copy gives the copy in recycled storage).
inline void fake_quant_floats(const tensor& x, tensor& out, const quant_params& q,
                              rounding_mode r) {
  with_rounding(r, [&]<class R>(R) {
    fake_quant_per_tensor<R>(tensor_view<const float>(std::span<const float>(x.f)),
                             tensor_view<float>(std::span<float>(out.f)), q);
  });
}

// Per-tensor quantizers on both inputs of a MatMul of two activations (quantized copies only;
// onnx/products.hpp says how their ranges are estimated).
struct operand_quantizers {
  quant_params a, b;
  rounding_mode rounding = rounding_mode::pytorch;
};

struct node {
  std::string name, op_type;  // from the file (name generated when empty: "<op_type>_<index>")
  std::vector<int> inputs;    // value ids; -1 for an absent optional input
  std::vector<int> outputs;   // value ids; -1 for an output nobody asked for
  std::map<std::string, attribute> attrs;
  std::optional<layer_params> layer;           // set for quantizable layers
  std::optional<operand_quantizers> operands;  // set for quantized activation products

  [[nodiscard]] const attribute* attr(const std::string& key) const {
    const auto it = attrs.find(key);
    return it == attrs.end() ? nullptr : &it->second;
  }
  [[nodiscard]] std::int64_t attr_int(const std::string& key, std::int64_t def) const {
    const attribute* a = attr(key);
    return a && a->type == attribute::kind::i ? a->i : def;
  }
  [[nodiscard]] float attr_float(const std::string& key, float def) const {
    const attribute* a = attr(key);
    return a && a->type == attribute::kind::f ? a->f : def;
  }
  [[nodiscard]] std::string attr_string(const std::string& key, std::string def) const {
    const attribute* a = attr(key);
    return a && a->type == attribute::kind::s ? a->s : def;
  }
  [[nodiscard]] std::vector<std::int64_t> attr_ints(const std::string& key,
                                                    std::vector<std::int64_t> def = {}) const {
    const attribute* a = attr(key);
    return a && a->type == attribute::kind::ints ? a->ints : def;
  }
};

// Hands t's float storage to `pool` (null: none) and empties t: activations only, not small
// shape tensors; the pool keeps the last few.
inline void recycle_into(std::vector<std::vector<float>>* pool, tensor& t) {
  static constexpr std::size_t kept = 4, smallest = 4096;
  if (pool && t.f.capacity() >= smallest) {
    if (pool->size() == kept) pool->erase(pool->begin());
    pool->push_back(std::move(t.f));
  }
  t = tensor();
}

// Everything a kernel needs besides its inputs.
struct op_env {
  const node& n;
  std::int64_t opset;
  const exec_limits& limits;
  const std::string& source;
  // Float storage of values the run no longer needs (graph::run_from keeps a few), reused by
  // make_for_overwrite; null: none.
  std::vector<std::vector<float>>* recycled = nullptr;

  [[nodiscard]] std::string where() const {
    return source + ": node \"" + n.name + "\" (" + n.op_type + ")";
  }
  [[noreturn]] void fail(errc code, const std::string& why) const {
    adaquant::detail::fail(code, where(), why);
  }
  [[noreturn]] void fail_unsupported(const std::string& why) const {
    throw unsupported(where() + ": " + why);
  }
  // A new zero tensor, after checking the element count against the limits (float storage
  // recycled as make_for_overwrite's, then zero-filled).
  [[nodiscard]] tensor make(dtype t, shape_t s) const {
    if (is_float(t)) {
      tensor out = make_for_overwrite(std::move(s));
      out.type = t;
      std::fill(out.f.begin(), out.f.end(), 0.0f);
      return out;
    }
    check_limit(s);
    return tensor::zeros(t, std::move(s));
  }
  // As make, for a float tensor whose every element the op writes: the smallest recycled storage
  // that holds it with at most twice its size (elements it already had are not zero-filled),
  // else new zero storage. The bound limits what a run's values hold beyond their size (a saved
  // state copies its values out of larger storage: graph::run_from).
  [[nodiscard]] tensor make_for_overwrite(shape_t s) const {
    const std::size_t n_el = check_limit(s);
    tensor out;
    out.shape = std::move(s);
    if (recycled) {
      auto it = recycled->end();
      for (auto r = recycled->begin(); r != recycled->end(); ++r)
        if (r->capacity() >= n_el && r->capacity() / 2 <= n_el &&
            (it == recycled->end() || r->capacity() < it->capacity()))
          it = r;
      if (it != recycled->end()) {
        out.f = std::move(*it);
        out.f.resize(n_el);
        recycled->erase(it);
        return out;
      }
    }
    out.f.assign(n_el, 0.0f);
    return out;
  }
  // The start of an op that rewrites its input in place: x's own storage when `movable` (input 0
  // read for the last time), else a copy of x in recycled storage.
  [[nodiscard]] tensor copy_of(const tensor& x, tensor* movable) const {
    if (movable) return std::move(*movable);
    if (!x.floating()) return x;
    tensor out = make_for_overwrite(x.shape);
    out.type = x.type;
    std::copy(x.f.begin(), x.f.end(), out.f.begin());
    return out;
  }
  // x fake-quantized per tensor with q, rounding as `r` says (a layer's input quantizer), in
  // recycled storage.
  [[nodiscard]] tensor fake_quant_copy(const tensor& x, const quant_params& q,
                                       rounding_mode r) const {
    if (!x.floating()) return x;  // the op rejects it
    tensor out = make_for_overwrite(x.shape);
    fake_quant_floats(x, out, q, r);
    return out;
  }
  // Hands t's float storage to the pool make_for_overwrite draws from (recycle_into).
  void recycle(tensor& t) const { recycle_into(recycled, t); }
  // The element count of shape s, checked against the limits.
  std::size_t check_limit(const shape_t& s) const {
    const std::size_t n_el = onnx::detail::checked_count(s, where());
    if (n_el > limits.max_elements)
      fail(errc::invalid_argument, "output of shape " + shape_string(s) + " exceeds the limit of " +
                                       std::to_string(limits.max_elements) + " elements");
    return n_el;
  }
  void check_macs(double macs) const {
    if (macs > limits.max_macs)
      fail(errc::invalid_argument, "needs " + std::to_string(macs) +
                                       " multiply-adds, more than the limit of " +
                                       std::to_string(limits.max_macs));
  }
  // Normalises an axis in [-rank, rank) (or [-rank-1, rank] with extra = 1).
  [[nodiscard]] std::size_t axis(std::int64_t a, std::size_t rank, std::size_t extra = 0) const {
    const auto r = static_cast<std::int64_t>(rank + extra);
    if (!(a >= -r && a < r))
      fail(errc::shape_mismatch, "axis " + std::to_string(a) + " is outside [" +
                                     std::to_string(-r) + ", " + std::to_string(r) + ")");
    return static_cast<std::size_t>(a < 0 ? a + r : a);
  }
};

}  // namespace adaquant::onnx
