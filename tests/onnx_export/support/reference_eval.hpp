#pragma once
// A small, independent interpreter of the ONNX ops the exporter's test models use, written from
// the operator spec (QuantizeLinear = saturate(round_half_even(x / scale) + zero_point),
// DequantizeLinear = (x - zero_point) * scale, per tensor or per axis). Floats compute in
// float32 with a fixed summation order; the tests' simulations call the same conv/gemm kernels,
// so both sides agree bit for bit when the quantized values agree.

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_onnx {

struct value {
  std::vector<std::int64_t> shape;
  std::vector<float> f;         // float tensors
  std::vector<std::int64_t> i;  // integer tensors
  int type = 1;
  [[nodiscard]] std::size_t size() const {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    return n;
  }
};

inline int type_bits(int t) { return t == 21 || t == 22 ? 4 : t == 7 ? 64 : t == 1 ? 32 : 8; }
inline bool type_signed(int t) { return t == 3 || t == 22 || t == 7; }
inline std::int64_t type_min(int t) {
  return type_signed(t) ? -(std::int64_t{1} << (type_bits(t) - 1)) : 0;
}
inline std::int64_t type_max(int t) {
  return type_signed(t) ? (std::int64_t{1} << (type_bits(t) - 1)) - 1
                        : (std::int64_t{1} << type_bits(t)) - 1;
}

inline value decode(const onnx::TensorProto& t) {
  value v;
  v.type = t.data_type();
  v.shape.assign(t.dims().begin(), t.dims().end());
  const std::size_t n = v.size();
  const std::string& raw = t.raw_data();
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(raw[k]); };
  if (v.type == 1) {
    if (raw.empty()) {
      v.f.assign(t.float_data().begin(), t.float_data().end());
    } else {
      v.f.resize(n);
      std::memcpy(v.f.data(), raw.data(), 4 * n);  // little-endian test hosts
    }
  } else if (v.type == 7) {
    v.i.resize(n);
    if (raw.empty())
      v.i.assign(t.int64_data().begin(), t.int64_data().end());
    else
      std::memcpy(v.i.data(), raw.data(), 8 * n);
  } else if (v.type == 21 || v.type == 22) {
    if (raw.size() != (n + 1) / 2) throw std::runtime_error("packed size of " + t.name());
    v.i.resize(n);
    for (std::size_t k = 0; k < n; ++k) {
      const int nib = (byte(k / 2) >> (4 * (k % 2))) & 0xF;
      v.i[k] = v.type == 22 && nib >= 8 ? nib - 16 : nib;
    }
  } else if (v.type == 2 || v.type == 3) {
    if (raw.size() != n) throw std::runtime_error("size of " + t.name());
    v.i.resize(n);
    for (std::size_t k = 0; k < n; ++k)
      v.i[k] = v.type == 3 ? static_cast<std::int8_t>(byte(k)) : byte(k);
  } else {
    throw std::runtime_error("type " + std::to_string(v.type) + " of " + t.name());
  }
  return v;
}

inline const onnx::AttributeProto* attr(const onnx::NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
inline std::int64_t attr_i(const onnx::NodeProto& n, const std::string& name, std::int64_t d) {
  const auto* a = attr(n, name);
  return a ? a->i() : d;
}
inline float attr_f(const onnx::NodeProto& n, const std::string& name, float d) {
  const auto* a = attr(n, name);
  return a ? a->f() : d;
}
inline std::vector<std::int64_t> attr_ints(const onnx::NodeProto& n, const std::string& name,
                                           std::vector<std::int64_t> d) {
  const auto* a = attr(n, name);
  return a ? std::vector<std::int64_t>(a->ints().begin(), a->ints().end()) : d;
}

struct conv_params {
  std::int64_t group = 1, stride_h = 1, stride_w = 1, pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0,
               dil_h = 1, dil_w = 1;
};

// NCHW conv; acc over (ic, kh, kw) in that order, then + bias.
inline value conv2d(const value& x, const value& w, const float* bias, const conv_params& p) {
  const auto N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const auto M = w.shape[0], CG = w.shape[1], KH = w.shape[2], KW = w.shape[3];
  const auto OH = (H + p.pad_t + p.pad_b - p.dil_h * (KH - 1) - 1) / p.stride_h + 1;
  const auto OW = (W + p.pad_l + p.pad_r - p.dil_w * (KW - 1) - 1) / p.stride_w + 1;
  value y;
  y.shape = {N, M, OH, OW};
  y.f.assign(static_cast<std::size_t>(N * M * OH * OW), 0.0f);
  const auto MG = M / p.group;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t oh = 0; oh < OH; ++oh)
        for (std::int64_t ow = 0; ow < OW; ++ow) {
          float acc = 0.0f;
          const auto g = m / MG;
          for (std::int64_t ic = 0; ic < CG; ++ic)
            for (std::int64_t kh = 0; kh < KH; ++kh)
              for (std::int64_t kw = 0; kw < KW; ++kw) {
                const auto ih = oh * p.stride_h - p.pad_t + kh * p.dil_h;
                const auto iw = ow * p.stride_w - p.pad_l + kw * p.dil_w;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += x.f[static_cast<std::size_t>(((n * C + g * CG + ic) * H + ih) * W + iw)] *
                       w.f[static_cast<std::size_t>(((m * CG + ic) * KH + kh) * KW + kw)];
              }
          if (bias) acc += bias[m];
          y.f[static_cast<std::size_t>(((n * M + m) * OH + oh) * OW + ow)] = acc;
        }
  return y;
}

// y[m, n] = alpha * sum_k A[m, k] B[k, n] (B given as [K, N], or [N, K] when trans_b) + beta * C
inline value gemm(const value& a, const value& b, bool trans_b, const value* c, float alpha = 1.0f,
                  float beta = 1.0f) {
  const auto M = a.shape[0], K = a.shape[1];
  const auto N = trans_b ? b.shape[0] : b.shape[1];
  value y;
  y.shape = {M, N};
  y.f.resize(static_cast<std::size_t>(M * N));
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (std::int64_t k = 0; k < K; ++k)
        acc += a.f[static_cast<std::size_t>(m * K + k)] *
               b.f[static_cast<std::size_t>(trans_b ? n * K + k : k * N + n)];
      float out = alpha * acc;
      if (c)
        out += beta *
               c->f[c->size() == static_cast<std::size_t>(N) ? static_cast<std::size_t>(n)
                                                             : static_cast<std::size_t>(m * N + n)];
      y.f[static_cast<std::size_t>(m * N + n)] = out;
    }
  return y;
}

// MatMul of [..., M, K] and [..., K, N] with equal batch axes (2-D: gemm).
inline value matmul(const value& a, const value& b) {
  const std::size_t r = a.shape.size();
  if (r == 2) return gemm(a, b, false, nullptr);
  if (b.shape.size() == 2) {  // a layer's weight applies to every row of a
    value rows = a;
    rows.shape = {static_cast<std::int64_t>(a.size()) / a.shape[r - 1], a.shape[r - 1]};
    value y = gemm(rows, b, false, nullptr);
    y.shape = a.shape;
    y.shape[r - 1] = b.shape[1];
    return y;
  }
  if (b.shape.size() != r) throw std::runtime_error("MatMul: operands of different ranks");
  const auto M = a.shape[r - 2], K = a.shape[r - 1], N = b.shape[r - 1];
  value y;
  y.shape = a.shape;
  y.shape[r - 1] = N;
  const auto batches = static_cast<std::int64_t>(a.size()) / (M * K);
  y.f.resize(static_cast<std::size_t>(batches * M * N));
  for (std::int64_t z = 0; z < batches; ++z) {
    value az, bz;
    az.shape = {M, K};
    bz.shape = {K, N};
    az.f.assign(a.f.begin() + z * M * K, a.f.begin() + (z + 1) * M * K);
    bz.f.assign(b.f.begin() + z * K * N, b.f.begin() + (z + 1) * K * N);
    const value yz = gemm(az, bz, false, nullptr);
    std::copy(yz.f.begin(), yz.f.end(), y.f.begin() + z * M * N);
  }
  return y;
}

class evaluator {
 public:
  explicit evaluator(const onnx::ModelProto& m) : m_(m) {
    for (const auto& t : m.graph().initializer()) env_[t.name()] = decode(t);
  }

  std::map<std::string, value> run(const std::map<std::string, value>& inputs,
                                   const std::vector<std::string>& wanted) {
    for (const auto& [k, v] : inputs) env_[k] = v;
    for (const auto& n : m_.graph().node()) step(n);
    std::map<std::string, value> out;
    for (const auto& w : wanted) out[w] = env_.at(w);
    return out;
  }

 private:
  const value& in(const onnx::NodeProto& n, int k) { return env_.at(n.input(k)); }
  bool has(const onnx::NodeProto& n, int k) { return n.input_size() > k && !n.input(k).empty(); }

  void step(const onnx::NodeProto& n) {
    const std::string& op = n.op_type();
    value y;
    if (op == "QuantizeLinear") {
      const value& x = in(n, 0);
      const value& s = in(n, 1);
      const value& z = in(n, 2);
      if (s.size() != 1) throw std::runtime_error("per-axis QuantizeLinear not needed here");
      y.shape = x.shape;
      y.type = z.type;
      y.i.resize(x.size());
      for (std::size_t k = 0; k < x.size(); ++k) {
        const double r =
            static_cast<double>(std::nearbyint(x.f[k] / s.f[0])) + static_cast<double>(z.i[0]);
        y.i[k] = static_cast<std::int64_t>(std::clamp(r, static_cast<double>(type_min(z.type)),
                                                      static_cast<double>(type_max(z.type))));
      }
    } else if (op == "DequantizeLinear") {
      const value& x = in(n, 0);
      const value& s = in(n, 1);
      const value& z = in(n, 2);
      y.shape = x.shape;
      y.f.resize(x.size());
      auto axis = attr_i(n, "axis", 1);
      if (axis < 0) axis += static_cast<std::int64_t>(x.shape.size());
      const auto a = static_cast<std::size_t>(axis);
      const auto block = static_cast<std::size_t>(attr_i(n, "block_size", 0));
      std::size_t inner = 1;
      for (std::size_t d = a + 1; d < x.shape.size(); ++d)
        inner *= static_cast<std::size_t>(x.shape[d]);
      const auto extent = static_cast<std::size_t>(x.shape[a]);
      if (block >
          0) {  // the spec: scale and zero point have x's shape, ceil(extent / block) on axis
        auto want = x.shape;
        want[a] = static_cast<std::int64_t>((extent + block - 1) / block);
        if (s.shape != want || z.shape != want)
          throw std::runtime_error("DequantizeLinear " + n.name() +
                                   ": blocked scale/zero point shape");
      }
      for (std::size_t k = 0; k < x.size(); ++k) {
        std::size_t c = 0;  // the scale's index: per tensor, per axis, or per block along the axis
        if (block > 0) {
          // scale has x's shape with ceil(extent / block) along the axis.
          const std::size_t blocks = (extent + block - 1) / block, outer = k / (inner * extent);
          c = (outer * blocks + (k / inner) % extent / block) * inner + k % inner;
        } else if (s.size() != 1) {
          c = (k / inner) % extent;
        }
        y.f[k] = static_cast<float>(static_cast<std::int32_t>(x.i[k] - z.i[c])) * s.f[c];
      }
    } else if (op == "Clip") {
      y = in(n, 0);
      const float lo = has(n, 1) ? in(n, 1).f[0] : -INFINITY,
                  hi = has(n, 2) ? in(n, 2).f[0] : INFINITY;
      for (float& v : y.f) v = std::min(std::max(v, lo), hi);
    } else if (op == "Relu") {
      y = in(n, 0);
      for (float& v : y.f) v = std::max(v, 0.0f);
    } else if (op == "Identity") {
      y = in(n, 0);
    } else if (op == "Flatten") {
      y = in(n, 0);
      const auto axis = attr_i(n, "axis", 1);
      std::int64_t outer = 1;
      for (std::int64_t d = 0; d < axis; ++d) outer *= y.shape[static_cast<std::size_t>(d)];
      y.shape = {outer, static_cast<std::int64_t>(y.size()) / outer};
    } else if (op == "Conv") {
      const value& w = in(n, 1);
      conv_params p;
      p.group = attr_i(n, "group", 1);
      const auto st = attr_ints(n, "strides", {1, 1}), pads = attr_ints(n, "pads", {0, 0, 0, 0}),
                 dil = attr_ints(n, "dilations", {1, 1});
      p.stride_h = st[0], p.stride_w = st[1], p.pad_t = pads[0], p.pad_l = pads[1],
      p.pad_b = pads[2], p.pad_r = pads[3], p.dil_h = dil[0], p.dil_w = dil[1];
      y = conv2d(in(n, 0), w, has(n, 2) ? in(n, 2).f.data() : nullptr, p);
    } else if (op == "Gemm") {
      if (attr_i(n, "transA", 0) != 0) throw std::runtime_error("transA");
      y = gemm(in(n, 0), in(n, 1), attr_i(n, "transB", 0) != 0, has(n, 2) ? &in(n, 2) : nullptr,
               attr_f(n, "alpha", 1.0f), attr_f(n, "beta", 1.0f));
    } else if (op == "MatMul") {
      y = matmul(in(n, 0), in(n, 1));
    } else if (op == "Gather") {  // axis 0: the slices [i, ...] the indices name
      const value& t = in(n, 0);
      const value& idx = in(n, 1);
      if (attr_i(n, "axis", 0) != 0 || t.shape.empty()) throw std::runtime_error("Gather");
      const std::int64_t rows = t.shape[0], cols = static_cast<std::int64_t>(t.size()) / rows;
      y.shape = idx.shape;
      y.shape.insert(y.shape.end(), t.shape.begin() + 1, t.shape.end());
      for (const std::int64_t i : idx.i) {
        const std::int64_t r = i < 0 ? i + rows : i;
        if (r < 0 || r >= rows) throw std::runtime_error("Gather: index out of range");
        y.f.insert(y.f.end(), t.f.begin() + r * cols, t.f.begin() + (r + 1) * cols);
      }
    } else if (op == "Add") {
      const value& a = in(n, 0);
      const value& b = in(n, 1);
      y = a;
      for (std::size_t k = 0; k < y.size(); ++k) y.f[k] = a.f[k] + b.f[k % b.size()];
    } else {
      throw std::runtime_error("reference_eval: op " + op);
    }
    env_[n.output(0)] = std::move(y);
  }

  const onnx::ModelProto& m_;
  std::map<std::string, value> env_;
};

}  // namespace test_onnx
