#pragma once
// The inner term of block reconstruction (deep supervision): which values of a block program are
// compared with their full-precision counterparts, on what scale, and the term's sum and gradient.
// The maths is documented on the public type, block_objective (objectives/block_objective.hpp,
// "Inner term"); this header holds its machinery, which block_objective owns.

#include <adaquant/objectives/block_program.hpp>
#include <adaquant/objectives/forward.hpp>

#include <cstddef>
#include <span>
#include <vector>

namespace adaquant {

// One supervised value: layer k, the slot compared (its output, or the relu / relu6 that is the
// output's only reader), that op's kind (block_op_kind::layer for none) and c_k.
struct block_inner_value {
  std::size_t layer = 0, slot = 0;
  block_op_kind activation = block_op_kind::layer;
  double scale = 0.0;
};

namespace detail {

// a_k: the op a supervised value applies to its layer's output (relu, relu6; the identity
// otherwise). The program's forward applies the same functions.
[[nodiscard]] inline float block_activate(block_op_kind a, float v) noexcept {
  return a == block_op_kind::relu    ? act_relu::value(v)
         : a == block_op_kind::relu6 ? act_relu6::value(v)
                                     : v;
}

class block_inner_term {
 public:
  // The values of `prog` (slot sizes `size`) and their scales c_k from the full-precision layer
  // outputs fp_out (all samples) and the block's targets t. The output slot is left out.
  block_inner_term(const block_program& prog, std::span<const std::size_t> size,
                   const std::vector<std::vector<float>>& fp_out, std::span<const float> t)
      : size_(size.begin(), size.end()), out_(size[prog.output]) {
    const std::size_t I = prog.inputs();
    for (std::size_t i = 0; i < prog.ops.size(); ++i) {
      if (prog.ops[i].kind != block_op_kind::layer) continue;
      block_inner_value v{prog.ops[i].layer, I + i, block_op_kind::layer, 0.0};
      std::size_t readers = 0, reader = 0;
      for (std::size_t j = 0; j < prog.ops.size(); ++j) {
        const block_op& o = prog.ops[j];
        const bool binary = o.kind == block_op_kind::add;
        const std::size_t reads = (o.a == I + i) + (binary && o.b == I + i);
        readers += reads;
        if (reads) reader = j;
      }
      if (readers == 1 && (prog.ops[reader].kind == block_op_kind::relu ||
                           prog.ops[reader].kind == block_op_kind::relu6)) {
        v.slot = I + reader;
        v.activation = prog.ops[reader].kind;
      }
      if (v.slot != prog.output) values_.push_back(v);
    }
    double tt = 0.0;
    for (float x : t) tt += static_cast<double>(x) * x;
    tt /= static_cast<double>(t.size());
    for (block_inner_value& v : values_) {
      double ff = 0.0;
      for (float x : fp_out[v.layer]) {
        const double a = block_activate(v.activation, x);
        ff += a * a;
      }
      ff /= static_cast<double>(fp_out[v.layer].size());
      v.scale = ff > 0.0 ? tt / (ff * static_cast<double>(values_.size())) : 0.0;
    }
  }

  [[nodiscard]] std::span<const block_inner_value> values() const noexcept { return values_; }

  // a_k(Y_k) of value j for sample n, element e (indices checked by the caller).
  [[nodiscard]] float target(const std::vector<std::vector<float>>& fp_out, std::size_t j,
                             std::size_t n, std::size_t e) const {
    const block_inner_value& v = values_[j];
    return block_activate(v.activation, fp_out[v.layer][n * size_[v.slot] + e]);
  }

  // The term at weight mu over `batch`, whose quantized slot values are in vals, as a sum on the
  // output's scale (times B * output elements, as the output's summed error); with `train`, its
  // gradients are kept for add_gradients.
  double sum(float mu, std::span<const std::size_t> batch,
             const std::vector<std::vector<float>>& vals,
             const std::vector<std::vector<float>>& fp_out, bool train) {
    const std::size_t B = batch.size();
    if (train) grad_.resize(values_.size());
    double total = 0.0;
    for (std::size_t j = 0; j < values_.size(); ++j) {
      const block_inner_value& v = values_[j];
      const std::size_t sz = size_[v.slot];
      const float* q = vals[v.slot].data();
      const float* fp = fp_out[v.layer].data();
      const double c = static_cast<double>(mu) * v.scale;
      if (train) grad_[j].resize(B * sz);
      const float dscale = static_cast<float>(2.0 * c / static_cast<double>(B * sz));
      double s = 0.0;
      for (std::size_t n = 0; n < B; ++n)
        for (std::size_t e = 0; e < sz; ++e) {
          const float d = q[n * sz + e] - block_activate(v.activation, fp[batch[n] * sz + e]);
          s += static_cast<double>(d) * d;
          if (train) grad_[j][n * sz + e] = dscale * d;
        }
      total += c * s / static_cast<double>(sz) * static_cast<double>(out_);
    }
    return total;
  }

  // Adds the last training sum's gradients into the slots' gradients.
  void add_gradients(std::vector<std::vector<float>>& grads) const {
    for (std::size_t j = 0; j < values_.size(); ++j) {
      float* d = grads[values_[j].slot].data();
      for (std::size_t e = 0; e < grad_[j].size(); ++e) d[e] += grad_[j][e];
    }
  }

 private:
  std::vector<std::size_t> size_;
  std::size_t out_ = 0;
  std::vector<block_inner_value> values_;
  std::vector<std::vector<float>> grad_;
};

}  // namespace detail
}  // namespace adaquant
