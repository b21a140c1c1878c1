#pragma once
// Elementwise ops: unary activations and numpy-broadcasting binary arithmetic.

#include <adaquant/onnx/ops/node.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace adaquant::onnx::detail {

// The numpy broadcast of two shapes (errc::shape_mismatch when they do not broadcast).
inline shape_t broadcast_shape(const op_env& env, const shape_t& a, const shape_t& b) {
  const std::size_t r = std::max(a.size(), b.size());
  shape_t out(r);
  for (std::size_t k = 0; k < r; ++k) {
    const std::int64_t da = k + a.size() >= r ? a[k + a.size() - r] : 1;
    const std::int64_t db = k + b.size() >= r ? b[k + b.size() - r] : 1;
    if (!(da == db || da == 1 || db == 1))
      env.fail(errc::shape_mismatch,
               "shapes " + shape_string(a) + " and " + shape_string(b) + " do not broadcast");
    out[k] = da == 1 ? db : da;
  }
  return out;
}

// Strides of `s` seen through the broadcast shape `out` (0 on broadcast axes).
inline std::vector<std::size_t> broadcast_strides(const shape_t& s, const shape_t& out) {
  std::vector<std::size_t> st(out.size(), 0);
  std::size_t stride = 1;
  for (std::size_t k = s.size(); k-- > 0;) {
    const std::size_t ok = k + out.size() - s.size();
    st[ok] = s[k] == 1 ? 0 : stride;
    stride *= static_cast<std::size_t>(s[k]);
  }
  return st;
}

// out[i] = f(a[ia], b[ib]) over the broadcast shape; T is float or int64.
template <class T, class F>
void broadcast_apply(const shape_t& out_shape, const shape_t& as, const std::vector<T>& a,
                     const shape_t& bs, const std::vector<T>& b, std::vector<T>& out, F f) {
  const std::size_t n = out.size();
  if (as == out_shape && bs == out_shape) {
    for (std::size_t k = 0; k < n; ++k) out[k] = f(a[k], b[k]);
    return;
  }
  if (as == out_shape && b.size() == 1) {
    for (std::size_t k = 0; k < n; ++k) out[k] = f(a[k], b[0]);
    return;
  }
  const std::size_t r = out_shape.size();
  if (n == 0 || r == 0) {
    if (n) out[0] = f(a[0], b[0]);
    return;
  }
  const auto sa = broadcast_strides(as, out_shape), sb = broadcast_strides(bs, out_shape);
  // Innermost axis in a tight loop, the others by an odometer.
  const std::size_t inner = r ? static_cast<std::size_t>(out_shape[r - 1]) : 1;
  const std::size_t ia_step = r ? sa[r - 1] : 0, ib_step = r ? sb[r - 1] : 0;
  std::vector<std::size_t> idx(r, 0);
  std::size_t ia = 0, ib = 0;
  for (std::size_t k = 0; k < n; k += inner) {
    for (std::size_t j = 0; j < inner; ++j) out[k + j] = f(a[ia + j * ia_step], b[ib + j * ib_step]);
    for (std::size_t ax = r - 1; ax-- > 0;) {  // advance the outer axes
      if (++idx[ax] < static_cast<std::size_t>(out_shape[ax])) {
        ia += sa[ax];
        ib += sb[ax];
        break;
      }
      ia -= sa[ax] * (idx[ax] - 1);
      ib -= sb[ax] * (idx[ax] - 1);
      idx[ax] = 0;
    }
  }
}

// `movable`: a's storage, which may be reused for the output (a is not read afterwards).
inline void binary_op(const op_env& env, const tensor& a, const tensor& b, tensor& out,
                      tensor* movable = nullptr) {
  const std::string& op = env.n.op_type;
  const bool pow = op == "Pow";
  if (!pow && a.type != b.type)
    env.fail(errc::shape_mismatch, "element types differ (" + std::to_string(int(a.type)) +
                                       " and " + std::to_string(int(b.type)) + ")");
  const shape_t s = broadcast_shape(env, a.shape, b.shape);
  if (movable && a.shape == s && a.floating() && b.floating()) {
    out = std::move(*movable);
    const std::vector<float>& av = out.f;
    const std::string& o = op;
    if (o == "Add") broadcast_apply<float>(s, s, av, b.shape, b.f, out.f, [](float x, float y) { return x + y; });
    else if (o == "Sub") broadcast_apply<float>(s, s, av, b.shape, b.f, out.f, [](float x, float y) { return x - y; });
    else if (o == "Mul") broadcast_apply<float>(s, s, av, b.shape, b.f, out.f, [](float x, float y) { return x * y; });
    else if (o == "Div") broadcast_apply<float>(s, s, av, b.shape, b.f, out.f, [](float x, float y) { return x / y; });
    else broadcast_apply<float>(s, s, av, b.shape, b.f, out.f, [](float x, float y) {
      return static_cast<float>(std::pow(static_cast<double>(x), static_cast<double>(y)));
    });
    return;
  }
  out = env.make(a.type, s);
  if (a.floating()) {
    std::vector<float> bf;  // Pow with an integer exponent
    const std::vector<float>* bp = &b.f;
    if (!b.floating()) {
      bf.assign(b.i.begin(), b.i.end());
      bp = &bf;
    }
    if (op == "Add") broadcast_apply<float>(s, a.shape, a.f, b.shape, *bp, out.f, [](float x, float y) { return x + y; });
    else if (op == "Sub") broadcast_apply<float>(s, a.shape, a.f, b.shape, *bp, out.f, [](float x, float y) { return x - y; });
    else if (op == "Mul") broadcast_apply<float>(s, a.shape, a.f, b.shape, *bp, out.f, [](float x, float y) { return x * y; });
    else if (op == "Div") broadcast_apply<float>(s, a.shape, a.f, b.shape, *bp, out.f, [](float x, float y) { return x / y; });
    else broadcast_apply<float>(s, a.shape, a.f, b.shape, *bp, out.f, [](float x, float y) {
      return static_cast<float>(std::pow(static_cast<double>(x), static_cast<double>(y)));
    });
    return;
  }
  if (pow && b.floating()) {  // numpy: power in floating point, cast back to the base's type
    std::vector<float> af(a.i.begin(), a.i.end()), of(out.size());
    broadcast_apply<float>(s, a.shape, af, b.shape, b.f, of, [](float x, float y) {
      return static_cast<float>(std::pow(static_cast<double>(x), static_cast<double>(y)));
    });
    for (std::size_t k = 0; k < of.size(); ++k)
      out.i[k] = wrap_to(a.type, std::isfinite(of[k]) ? static_cast<std::int64_t>(std::clamp(of[k], -9.2e18f, 9.2e18f)) : 0);
    return;
  }
  const dtype t = a.type;
  auto wrap = [t](std::int64_t v) { return wrap_to(t, v); };
  using I = std::int64_t;
  if (op == "Add") broadcast_apply<I>(s, a.shape, a.i, b.shape, b.i, out.i, [&](I x, I y) { return wrap(static_cast<I>(static_cast<std::uint64_t>(x) + static_cast<std::uint64_t>(y))); });
  else if (op == "Sub") broadcast_apply<I>(s, a.shape, a.i, b.shape, b.i, out.i, [&](I x, I y) { return wrap(static_cast<I>(static_cast<std::uint64_t>(x) - static_cast<std::uint64_t>(y))); });
  else if (op == "Mul") broadcast_apply<I>(s, a.shape, a.i, b.shape, b.i, out.i, [&](I x, I y) { return wrap(static_cast<I>(static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(y))); });
  else if (op == "Div") {
    bool zero = false;
    broadcast_apply<I>(s, a.shape, a.i, b.shape, b.i, out.i, [&](I x, I y) -> I {
      if (y == 0 || (x == std::numeric_limits<I>::min() && y == -1)) {
        zero = true;
        return 0;
      }
      return wrap(x / y);
    });
    if (zero) env.fail(errc::invalid_argument, "integer division by zero or overflow");
  } else {
    broadcast_apply<I>(s, a.shape, a.i, b.shape, b.i, out.i, [&](I x, I y) -> I {
      I r = 1;
      for (I k = 0; k < std::min<I>(y, 64); ++k) r = static_cast<I>(static_cast<std::uint64_t>(r) * static_cast<std::uint64_t>(x));
      return wrap(r);
    });
  }
}

inline float erf_f(float x) { return std::erf(x); }

// Unary float ops (Neg also on integers). `movable`: input 0's storage, reusable for the output.
// min(max(e, lo), hi) with std::min/max's NaN behaviour (a NaN stays NaN), as a loop the
// compiler vectorises.
inline void clip_floats(std::vector<float>& v, float lo, float hi) noexcept {
  for (float& e : v) {
    const float t = e < lo ? lo : e;
    e = hi < t ? hi : t;
  }
}

inline void unary_op(const op_env& env, const std::vector<const tensor*>& in, tensor& out,
                     tensor* movable = nullptr) {
  const std::string& op = env.n.op_type;
  const dtype type = in.at(0)->type;
  const bool floating = in[0]->floating();
  out = env.copy_of(*in[0], movable);
  const tensor& x = out;  // the input's type and shape; values are read from out in place
  if (op == "Identity" || op == "Dropout") return;
  if (!floating) {
    if (op == "Neg") {
      for (auto& v : out.i) v = wrap_to(type, static_cast<std::int64_t>(0ull - static_cast<std::uint64_t>(v)));
      return;
    }
    if (op == "Relu") {
      for (auto& v : out.i) v = std::max<std::int64_t>(v, 0);
      return;
    }
    if (op != "Clip") env.fail_unsupported("integer input");
  }
  std::vector<float>& v = out.f;
  if (op == "Relu") {
    for (float& e : v) e = e > 0.0f ? e : 0.0f;
  } else if (op == "Sigmoid") {
    for (float& e : v) e = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(e))));
  } else if (op == "Tanh") {
    for (float& e : v) e = std::tanh(e);
  } else if (op == "Erf") {
    for (float& e : v) e = erf_f(e);
  } else if (op == "Sqrt") {
    for (float& e : v) e = std::sqrt(e);
  } else if (op == "Neg") {
    for (float& e : v) e = -e;
  } else if (op == "Exp") {
    for (float& e : v) e = std::exp(e);
  } else if (op == "Log") {
    for (float& e : v) e = std::log(e);
  } else if (op == "LeakyRelu") {
    const float a = env.n.attr_float("alpha", 0.01f);
    for (float& e : v) e = e >= 0.0f ? e : a * e;
  } else if (op == "HardSigmoid") {
    const float a = env.n.attr_float("alpha", 0.2f), b = env.n.attr_float("beta", 0.5f);
    for (float& e : v) e = std::clamp(a * e + b, 0.0f, 1.0f);
  } else if (op == "HardSwish") {
    for (float& e : v) e = e * std::clamp(e / 6.0f + 0.5f, 0.0f, 1.0f);
  } else if (op == "Clip") {
    if (env.opset < 11) {
      const float lo = env.n.attr_float("min", -std::numeric_limits<float>::infinity());
      const float hi = env.n.attr_float("max", std::numeric_limits<float>::infinity());
      clip_floats(v, lo, hi);
      return;
    }
    const tensor* lo = in.size() > 1 ? in[1] : nullptr;
    const tensor* hi = in.size() > 2 ? in[2] : nullptr;
    for (const tensor* b : {lo, hi})
      if (b && !(b->size() == 1 && b->type == x.type))
        env.fail(errc::shape_mismatch, "min and max must be scalars of the input's type");
    if (x.floating()) {
      const float l = lo ? lo->f[0] : -std::numeric_limits<float>::infinity();
      const float h = hi ? hi->f[0] : std::numeric_limits<float>::infinity();
      clip_floats(v, l, h);
    } else {
      const std::int64_t l = lo ? lo->i[0] : std::numeric_limits<std::int64_t>::min();
      const std::int64_t h = hi ? hi->i[0] : std::numeric_limits<std::int64_t>::max();
      for (auto& e : out.i) e = std::min(std::max(e, l), h);
    }
  } else {
    env.fail_unsupported("op type " + op);
  }
}

}  // namespace adaquant::onnx::detail
