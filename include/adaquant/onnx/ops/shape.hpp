#pragma once
// Data movement and shape ops: Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Concat, Slice,
// Gather, Shape, Cast, Constant, ConstantOfShape. They work on float and integer tensors alike
// (shape sub-graphs compute on int64).

#include <adaquant/onnx/ops/node.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace adaquant::onnx::detail {

inline const std::vector<std::int64_t>& int_input(const op_env& env, const tensor* t,
                                                  const char* what) {
  if (!t || t->floating())
    env.fail(errc::shape_mismatch, std::string(what) + " must be an integer tensor");
  return t->i;
}

// Copies element k of `from` to element j of `to` (same dtype class).
inline void copy_elems(const tensor& from, std::size_t k, tensor& to, std::size_t j, std::size_t n) {
  if (from.floating())
    std::copy_n(from.f.begin() + static_cast<std::ptrdiff_t>(k), n, to.f.begin() + static_cast<std::ptrdiff_t>(j));
  else
    std::copy_n(from.i.begin() + static_cast<std::ptrdiff_t>(k), n, to.i.begin() + static_cast<std::ptrdiff_t>(j));
}

// `mv`: x's storage, reusable for y.
inline void reshape_to(const op_env& env, const tensor& x, shape_t s, tensor& y, tensor* mv = nullptr) {
  if (s.size() > max_rank || checked_count(s, env.where()) != x.size())
    env.fail(errc::shape_mismatch, "cannot reshape " + shape_string(x.shape) + " to " + shape_string(s));
  if (mv)
    y = std::move(*mv);
  else
    y = x;
  y.shape = std::move(s);
}

inline void flatten(const op_env& env, const tensor& x, tensor& y, tensor* mv = nullptr) {
  std::int64_t a0 = env.n.attr_int("axis", 1);
  const auto r = static_cast<std::int64_t>(x.rank());
  if (a0 < 0) a0 += r;
  if (!(a0 >= 0 && a0 <= r)) env.fail(errc::shape_mismatch, "axis outside [-rank, rank]");
  const auto ax = static_cast<std::size_t>(a0);
  std::int64_t a = 1, b = 1;
  for (std::size_t d = 0; d < x.rank(); ++d) (d < ax ? a : b) *= x.shape[d];
  reshape_to(env, x, {a, b}, y, mv);
}

inline void reshape(const op_env& env, const tensor& x, const tensor* shape_in, tensor& y,
                    tensor* mv = nullptr) {
  const auto& req = int_input(env, shape_in, "shape");
  const bool allowzero = env.n.attr_int("allowzero", 0) != 0;
  shape_t s(req.begin(), req.end());
  std::int64_t known = 1;
  std::size_t infer = s.size();
  for (std::size_t d = 0; d < s.size(); ++d) {
    if (s[d] == 0 && !allowzero) {
      if (d >= x.rank()) env.fail(errc::shape_mismatch, "0 in shape beyond the input's rank");
      s[d] = x.shape[d];
    }
    if (s[d] == -1) {
      if (infer != s.size()) env.fail(errc::shape_mismatch, "more than one -1 in shape");
      infer = d;
      continue;
    }
    if (s[d] < 0) env.fail(errc::shape_mismatch, "negative extent in shape " + shape_string(s));
    if (s[d] != 0 && known > (std::int64_t{1} << 50) / s[d]) env.fail(errc::shape_mismatch, "shape too large");
    known *= s[d];
  }
  if (infer != s.size()) {
    const auto total = static_cast<std::int64_t>(x.size());
    if (known == 0 || total % known != 0)
      env.fail(errc::shape_mismatch, "cannot reshape " + shape_string(x.shape) + " to " + shape_string(s));
    s[infer] = total / known;
  }
  reshape_to(env, x, std::move(s), y, mv);
}

inline void transpose(const op_env& env, const tensor& x, tensor& y) {
  const std::size_t r = x.rank();
  std::vector<std::int64_t> perm = env.n.attr_ints("perm");
  if (perm.empty())
    for (std::size_t d = 0; d < r; ++d) perm.push_back(static_cast<std::int64_t>(r - 1 - d));
  std::vector<bool> seen(r, false);
  if (perm.size() != r) env.fail(errc::shape_mismatch, "perm has the wrong length");
  for (auto& p : perm) {
    p = static_cast<std::int64_t>(env.axis(p, r));
    if (seen[static_cast<std::size_t>(p)]) env.fail(errc::shape_mismatch, "perm repeats an axis");
    seen[static_cast<std::size_t>(p)] = true;
  }
  shape_t ys(r);
  for (std::size_t d = 0; d < r; ++d) ys[d] = x.shape[static_cast<std::size_t>(perm[d])];
  y = env.make(x.type, ys);
  std::vector<std::size_t> xs(r, 1);
  for (std::size_t d = r; d-- > 1;) xs[d - 1] = xs[d] * static_cast<std::size_t>(x.shape[d]);
  std::vector<std::size_t> step(r);  // x stride of each output axis
  for (std::size_t d = 0; d < r; ++d) step[d] = xs[static_cast<std::size_t>(perm[d])];
  // When the last axis stays last, whole rows are copied (attention's head split and merge).
  const bool rows = r > 0 && perm[r - 1] == static_cast<std::int64_t>(r - 1);
  const std::size_t run = rows ? static_cast<std::size_t>(ys[r - 1]) : 1, axes = rows ? r - 1 : r;
  std::vector<std::size_t> idx(r, 0);
  std::size_t off = 0;
  for (std::size_t k = 0; run > 0 && k < y.size(); k += run) {
    copy_elems(x, off, y, k, run);
    for (std::size_t d = axes; d-- > 0;) {
      off += step[d];
      if (++idx[d] < static_cast<std::size_t>(ys[d])) break;
      off -= step[d] * idx[d];
      idx[d] = 0;
    }
  }
}

inline std::vector<std::int64_t> axes_of(const op_env& env, const std::vector<const tensor*>& in) {
  if (env.opset >= 13) return in.size() > 1 && in[1] ? int_input(env, in[1], "axes") : std::vector<std::int64_t>{};
  return env.n.attr_ints("axes");
}

inline void squeeze(const op_env& env, const std::vector<const tensor*>& in, tensor& y,
                    tensor* mv = nullptr) {
  const tensor& x = *in[0];
  const auto axes = axes_of(env, in);
  std::vector<bool> drop(x.rank(), false);
  if (axes.empty())
    for (std::size_t d = 0; d < x.rank(); ++d) drop[d] = x.shape[d] == 1;
  for (const auto a : axes) {
    const std::size_t d = env.axis(a, x.rank());
    if (x.shape[d] != 1) env.fail(errc::shape_mismatch, "cannot squeeze axis " + std::to_string(a) + " of " + shape_string(x.shape));
    drop[d] = true;
  }
  shape_t s;
  for (std::size_t d = 0; d < x.rank(); ++d)
    if (!drop[d]) s.push_back(x.shape[d]);
  reshape_to(env, x, s, y, mv);
}

inline void unsqueeze(const op_env& env, const std::vector<const tensor*>& in, tensor& y,
                      tensor* mv = nullptr) {
  const tensor& x = *in[0];
  const auto axes = axes_of(env, in);
  const std::size_t r = x.rank() + axes.size();
  std::vector<bool> add(r, false);
  for (const auto a : axes) {
    const std::size_t d = env.axis(a, r);
    if (add[d]) env.fail(errc::shape_mismatch, "axes repeat");
    add[d] = true;
  }
  shape_t s;
  std::size_t k = 0;
  for (std::size_t d = 0; d < r; ++d) s.push_back(add[d] ? 1 : x.shape[k++]);
  reshape_to(env, x, s, y, mv);
}

inline void concat(const op_env& env, const std::vector<const tensor*>& in, tensor& y) {
  if (in.empty() || !in[0]) env.fail(errc::shape_mismatch, "no inputs");
  const tensor& f = *in[0];
  const std::size_t ax = env.axis(env.n.attr_int("axis", 0), std::max<std::size_t>(f.rank(), 1));
  shape_t s = f.shape;
  if (s.empty()) env.fail(errc::shape_mismatch, "cannot concatenate scalars");
  s[ax] = 0;
  for (const tensor* t : in) {
    if (!t || t->type != f.type || t->rank() != f.rank())
      env.fail(errc::shape_mismatch, "inputs differ in type or rank");
    for (std::size_t d = 0; d < f.rank(); ++d)
      if (d != ax && t->shape[d] != f.shape[d])
        env.fail(errc::shape_mismatch, shape_string(t->shape) + " and " + shape_string(f.shape) + " differ off the axis");
    s[ax] += t->shape[ax];
  }
  y = env.make(f.type, s);
  std::size_t outer = 1, inner = 1;
  for (std::size_t d = 0; d < ax; ++d) outer *= static_cast<std::size_t>(s[d]);
  for (std::size_t d = ax + 1; d < s.size(); ++d) inner *= static_cast<std::size_t>(s[d]);
  const std::size_t row = static_cast<std::size_t>(s[ax]) * inner;
  std::size_t at = 0;
  for (const tensor* t : in) {
    const std::size_t part = static_cast<std::size_t>(t->shape[ax]) * inner;
    for (std::size_t o = 0; o < outer; ++o) copy_elems(*t, o * part, y, o * row + at, part);
    at += part;
  }
}

inline void slice(const op_env& env, const std::vector<const tensor*>& in, tensor& y) {
  const tensor& x = *in[0];
  std::vector<std::int64_t> starts, ends, axes, steps;
  if (env.opset < 10) {
    starts = env.n.attr_ints("starts");
    ends = env.n.attr_ints("ends");
    axes = env.n.attr_ints("axes");
  } else {
    starts = int_input(env, in.size() > 1 ? in[1] : nullptr, "starts");
    ends = int_input(env, in.size() > 2 ? in[2] : nullptr, "ends");
    if (in.size() > 3 && in[3]) axes = int_input(env, in[3], "axes");
    if (in.size() > 4 && in[4]) steps = int_input(env, in[4], "steps");
  }
  if (axes.empty())
    for (std::size_t d = 0; d < starts.size(); ++d) axes.push_back(static_cast<std::int64_t>(d));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (!(ends.size() == starts.size() && axes.size() == starts.size() && steps.size() == starts.size()))
    env.fail(errc::shape_mismatch, "starts, ends, axes and steps differ in length");
  const std::size_t r = x.rank();
  std::vector<std::int64_t> b(r, 0), st(r, 1);
  shape_t ys = x.shape;
  std::vector<bool> seen(r, false);
  for (std::size_t k = 0; k < starts.size(); ++k) {
    const std::size_t d = env.axis(axes[k], r);
    if (seen[d]) env.fail(errc::shape_mismatch, "axes repeat");
    seen[d] = true;
    const std::int64_t n = x.shape[d];
    if (steps[k] == 0) env.fail(errc::invalid_argument, "step 0");
    // Steps beyond any extent select one element either way; clamping them avoids overflow.
    const std::int64_t s = std::clamp<std::int64_t>(steps[k], -(std::int64_t{1} << 40), std::int64_t{1} << 40);
    auto clampv = [](std::int64_t v, std::int64_t lo, std::int64_t hi) { return std::min(std::max(v, lo), hi); };
    std::int64_t lo = starts[k], hi = ends[k];
    if (lo < 0) lo += n;  // (no overflow: n >= 0)
    if (hi < 0) hi += n;
    if (s > 0) {
      lo = clampv(lo, 0, n);
      hi = clampv(hi, 0, n);
      ys[d] = hi > lo ? (hi - lo + s - 1) / s : 0;
    } else {
      lo = clampv(lo, -1, n - 1);
      hi = clampv(hi, -1, n - 1);
      ys[d] = lo > hi ? (lo - hi + (-s) - 1) / (-s) : 0;
    }
    b[d] = lo;
    st[d] = s;
  }
  y = env.make(x.type, ys);
  std::vector<std::int64_t> xs(r, 1);
  for (std::size_t d = r; d-- > 1;) xs[d - 1] = xs[d] * x.shape[d];
  std::vector<std::int64_t> idx(r, 0);
  for (std::size_t k = 0; k < y.size(); ++k) {
    std::int64_t off = 0;
    for (std::size_t d = 0; d < r; ++d) off += (b[d] + idx[d] * st[d]) * xs[d];
    copy_elems(x, static_cast<std::size_t>(off), y, k, 1);
    for (std::size_t d = r; d-- > 0;) {
      if (++idx[d] < ys[d]) break;
      idx[d] = 0;
    }
  }
}

inline void gather(const op_env& env, const tensor& x, const tensor& ind, tensor& y) {
  const auto& idx = int_input(env, &ind, "indices");
  if (x.rank() == 0) env.fail(errc::shape_mismatch, "Gather from a scalar");
  const std::size_t ax = env.axis(env.n.attr_int("axis", 0), x.rank());
  shape_t ys(x.shape.begin(), x.shape.begin() + static_cast<std::ptrdiff_t>(ax));
  ys.insert(ys.end(), ind.shape.begin(), ind.shape.end());
  ys.insert(ys.end(), x.shape.begin() + static_cast<std::ptrdiff_t>(ax) + 1, x.shape.end());
  y = env.make(x.type, ys);
  std::size_t outer = 1, inner = 1;
  for (std::size_t d = 0; d < ax; ++d) outer *= static_cast<std::size_t>(x.shape[d]);
  for (std::size_t d = ax + 1; d < x.rank(); ++d) inner *= static_cast<std::size_t>(x.shape[d]);
  const std::int64_t n = x.shape[ax];
  for (std::size_t q = 0; q < idx.size(); ++q) {
    const std::int64_t j = idx[q] < 0 ? idx[q] + n : idx[q];
    if (!(j >= 0 && j < n))
      env.fail(errc::shape_mismatch, "index " + std::to_string(idx[q]) + " is outside [" +
                                         std::to_string(-n) + ", " + std::to_string(n) + ")");
    for (std::size_t o = 0; o < outer; ++o)
      copy_elems(x, (o * static_cast<std::size_t>(n) + static_cast<std::size_t>(j)) * inner, y,
                 (o * idx.size() + q) * inner, inner);
  }
}

inline void shape_of(const op_env& env, const tensor& x, tensor& y) {
  auto r = static_cast<std::int64_t>(x.rank());
  std::int64_t start = env.n.attr_int("start", 0), end = env.n.attr_int("end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<std::int64_t>(start, 0, r);
  end = std::clamp<std::int64_t>(end, 0, r);
  std::vector<std::int64_t> v;
  for (std::int64_t d = start; d < end; ++d) v.push_back(x.shape[static_cast<std::size_t>(d)]);
  y = tensor::ints(std::move(v));
}

inline void cast(const op_env& env, const tensor& x, tensor& y) {
  const std::int64_t to = env.n.attr_int("to", 0);
  if (!is_supported_dtype(static_cast<std::int32_t>(to))) env.fail_unsupported("Cast to type " + std::to_string(to));
  const auto t = static_cast<dtype>(to);
  y = env.make(is_float(t) ? dtype::float32 : t, x.shape);
  if (is_float(t)) {
    for (std::size_t k = 0; k < x.size(); ++k)
      y.f[k] = x.floating() ? x.f[k] : static_cast<float>(x.i[k]);
    if (t == dtype::float16)
      for (float& v : y.f) v = round_to_half(v);
    return;
  }
  for (std::size_t k = 0; k < x.size(); ++k) {
    if (x.floating()) {
      const float v = x.f[k];
      if (t == dtype::boolean) {
        y.i[k] = v != 0.0f;
        continue;
      }
      const double tv = std::isfinite(v) ? std::trunc(static_cast<double>(v)) : 0.0;
      const double c = std::clamp(tv, -9.2e18, 9.2e18);
      y.i[k] = wrap_to(t, static_cast<std::int64_t>(c));
    } else {
      y.i[k] = wrap_to(t, x.i[k]);
    }
  }
}

// The value of a Constant node (errors name the node).
inline tensor constant_value(const op_env& env) {
  const node& n = env.n;
  if (const attribute* a = n.attr("value"); a && a->type == attribute::kind::t) return a->t;
  if (const attribute* a = n.attr("value_float"); a && a->type == attribute::kind::f) return tensor::scalar(a->f);
  if (const attribute* a = n.attr("value_floats"); a && a->type == attribute::kind::floats) {
    return tensor({static_cast<std::int64_t>(a->floats.size())}, a->floats);
  }
  if (const attribute* a = n.attr("value_int"); a && a->type == attribute::kind::i) return tensor(dtype::int64, {}, {a->i});
  if (const attribute* a = n.attr("value_ints"); a && a->type == attribute::kind::ints) return tensor::ints(a->ints);
  env.fail_unsupported("Constant without a tensor, float(s) or int(s) value");
}

inline void constant_of_shape(const op_env& env, const tensor* s, tensor& y) {
  const auto& dims = int_input(env, s, "input");
  tensor v = tensor::scalar(0.0f);
  if (const attribute* a = env.n.attr("value"); a && a->type == attribute::kind::t) {
    if (a->t.size() != 1) env.fail(errc::shape_mismatch, "value must hold one element");
    v = a->t;
  }
  y = env.make(v.type, shape_t(dims.begin(), dims.end()));
  if (v.floating()) std::fill(y.f.begin(), y.f.end(), v.f[0]);
  else std::fill(y.i.begin(), y.i.end(), v.i[0]);
}

}  // namespace adaquant::onnx::detail
