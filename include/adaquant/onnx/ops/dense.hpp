#pragma once
// Gemm and MatMul (through detail::linear_batch: one row of the left operand, e.g. one sample,
// gives the same bits in any batch), BatchNormalization, normalisations and reductions, Resize.

#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/onnx/gemm.hpp>
#include <adaquant/onnx/ops/elementwise.hpp>

#include <cmath>
#include <numeric>

namespace adaquant::onnx::detail {

inline std::vector<float> transposed(const float* a, std::size_t rows, std::size_t cols) {
  std::vector<float> t(rows * cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) t[c * rows + r] = a[r * cols + c];
  return t;
}


// A quantizable layer as a linear map over the rows of x (Gemm with a constant weight, MatMul
// with a constant 2-D weight): y[r, o] = sum_k x[r, k] W[o, k] + b[o].
inline void linear_rows(const op_env& env, const tensor& x_in, const layer_params& l, tensor& y) {
  const tensor* xp = &x_in;
  tensor xq;
  if (l.input_quant) {
    xq = env.fake_quant_copy(x_in, *l.input_quant, l.input_rounding);
    xp = &xq;
  }
  const tensor& x = *xp;
  const std::size_t out = static_cast<std::size_t>(l.weight.shape[0]);
  const std::size_t in = static_cast<std::size_t>(l.weight.shape[1]);
  if (!(x.floating() && x.rank() >= 1 && static_cast<std::size_t>(x.shape.back()) == in))
    env.fail(errc::shape_mismatch, "input " + shape_string(x.shape) + " does not fit weight [" +
                                       std::to_string(out) + ", " + std::to_string(in) + "]");
  const std::size_t rows = in ? x.size() / in : 0;
  env.check_macs(static_cast<double>(rows) * in * out);
  shape_t ys = x.shape;
  ys.back() = static_cast<std::int64_t>(out);
  y = env.make_for_overwrite(ys);  // linear_batch writes every element
  linear_batch(l.weight.f.data(), out, in, x.f.data(), rows, y.f.data());
  env.recycle(xq);
  if (!l.bias.empty())
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t o = 0; o < out; ++o) y.f[r * out + o] += l.bias[o];
}

// General Gemm: Y = alpha * A' B' + beta * C.
inline void gemm(const op_env& env, const tensor& a, const tensor& b, const tensor* c, tensor& y) {
  const node& nd = env.n;
  if (!a.floating() || !b.floating()) env.fail_unsupported("integer Gemm");
  if (a.rank() != 2 || b.rank() != 2)
    env.fail(errc::shape_mismatch, "A " + shape_string(a.shape) + " and B " + shape_string(b.shape) +
                                       " must be matrices");
  const bool ta = nd.attr_int("transA", 0) != 0, tb = nd.attr_int("transB", 0) != 0;
  const float alpha = nd.attr_float("alpha", 1.0f), beta = nd.attr_float("beta", 1.0f);
  const auto m = static_cast<std::size_t>(ta ? a.shape[1] : a.shape[0]);
  const auto k = static_cast<std::size_t>(ta ? a.shape[0] : a.shape[1]);
  const auto kb = static_cast<std::size_t>(tb ? b.shape[1] : b.shape[0]);
  const auto n = static_cast<std::size_t>(tb ? b.shape[0] : b.shape[1]);
  if (k != kb)
    env.fail(errc::shape_mismatch, "A " + shape_string(a.shape) + " and B " +
                                       shape_string(b.shape) + " do not multiply");
  env.check_macs(static_cast<double>(m) * n * k);
  y = env.make(dtype::float32, {static_cast<std::int64_t>(m), static_cast<std::int64_t>(n)});
  const std::vector<float> at = ta ? transposed(a.f.data(), k, m) : std::vector<float>();
  const std::vector<float> bt = tb ? std::vector<float>() : transposed(b.f.data(), k, n);
  linear_batch(tb ? b.f.data() : bt.data(), n, k, ta ? at.data() : a.f.data(), m, y.f.data());
  if (alpha != 1.0f)
    for (float& v : y.f) v *= alpha;
  if (c) {
    if (!c->floating()) env.fail(errc::shape_mismatch, "C must be floating point");
    const shape_t s = broadcast_shape(env, y.shape, c->shape);
    if (s != y.shape)
      env.fail(errc::shape_mismatch, "C " + shape_string(c->shape) + " does not broadcast to " +
                                         shape_string(y.shape));
    std::vector<float> out(y.size());
    broadcast_apply<float>(y.shape, y.shape, y.f, c->shape, c->f, out,
                           [beta](float u, float v) { return u + beta * v; });
    y.f = std::move(out);
  }
}

// numpy matmul for float tensors of rank >= 1.
inline void matmul(const op_env& env, const tensor& a0, const tensor& b0, tensor& y) {
  if (!a0.floating() || !b0.floating()) env.fail_unsupported("integer MatMul");
  if (a0.rank() == 0 || b0.rank() == 0) env.fail(errc::shape_mismatch, "MatMul of a scalar");
  shape_t as = a0.shape, bs = b0.shape;
  const bool a1 = as.size() == 1, b1 = bs.size() == 1;
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  const std::int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  if (bs[bs.size() - 2] != k)
    env.fail(errc::shape_mismatch, shape_string(a0.shape) + " and " + shape_string(b0.shape) +
                                       " do not multiply");
  const shape_t abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
  const shape_t batch = broadcast_shape(env, abatch, bbatch);
  shape_t ys = batch;
  ys.push_back(m);
  ys.push_back(n);
  const std::size_t nb = checked_count(batch, env.where());
  env.check_macs(static_cast<double>(nb) * m * n * k);
  y = env.make_for_overwrite(ys);  // the products below write every element
  // Batch index -> offsets into a and b (broadcast).
  const auto sa = broadcast_strides(abatch, batch), sb = broadcast_strides(bbatch, batch);
  std::vector<std::size_t> idx(batch.size(), 0);
  const auto mk = static_cast<std::size_t>(m * k), kn = static_cast<std::size_t>(k * n),
             mn = static_cast<std::size_t>(m * n);
  std::vector<float> bt;
  std::size_t last_b = static_cast<std::size_t>(-1);
  for (std::size_t q = 0; q < nb; ++q) {
    std::size_t oa = 0, ob = 0;
    for (std::size_t d = 0; d < batch.size(); ++d) {
      oa += idx[d] * sa[d];
      ob += idx[d] * sb[d];
    }
    if (ob != last_b) {
      bt = transposed(b0.f.data() + ob * kn, static_cast<std::size_t>(k), static_cast<std::size_t>(n));
      last_b = ob;
    }
    linear_batch(bt.data(), static_cast<std::size_t>(n), static_cast<std::size_t>(k),
                 a0.f.data() + oa * mk, static_cast<std::size_t>(m), y.f.data() + q * mn);
    for (std::size_t d = batch.size(); d-- > 0;) {
      if (++idx[d] < static_cast<std::size_t>(batch[d])) break;
      idx[d] = 0;
    }
  }
  if (a1) ys.erase(ys.end() - 2);
  if (b1) ys.pop_back();
  y.shape = ys;
}

// Inference BatchNormalization over axis 1: y = x * s + (beta - mean * s), s = gamma/sqrt(var+eps).
inline void batch_norm(const op_env& env, const std::vector<const tensor*>& in, tensor& y,
                       tensor* movable = nullptr) {
  if (env.n.attr_int("training_mode", 0) != 0) env.fail_unsupported("training_mode 1");
  const tensor& x = *in[0];
  if (!x.floating() || x.rank() < 2) env.fail(errc::shape_mismatch, "expected a float [N, C, ...] input");
  const auto c = static_cast<std::size_t>(x.shape[1]);
  for (std::size_t k = 1; k < 5; ++k)
    if (!(in.size() > k && in[k] && in[k]->floating() && in[k]->size() == c))
      env.fail(errc::shape_mismatch, "scale, B, mean and var must hold " + std::to_string(c) + " floats");
  const float eps = env.n.attr_float("epsilon", 1e-5f);
  const std::size_t n = static_cast<std::size_t>(x.shape[0]),
                    hw = n * c != 0 ? x.size() / (n * c) : 0;
  y = env.copy_of(x, movable);  // x is not read after this (it may have been moved)
  for (std::size_t ci = 0; ci < c; ++ci) {
    const float s = in[1]->f[ci] / std::sqrt(in[4]->f[ci] + eps);
    const float shift = in[2]->f[ci] - in[3]->f[ci] * s;
    for (std::size_t ni = 0; ni < n; ++ni) {
      float* v = y.f.data() + (ni * c + ci) * hw;
      for (std::size_t i = 0; i < hw; ++i) v[i] = v[i] * s + shift;
    }
  }
}

// [outer, axis, inner] view of a shape at `axis`.
struct split3 {
  std::size_t outer = 1, mid = 1, inner = 1;
};
inline split3 split_at(const shape_t& s, std::size_t axis, std::size_t axis_end) {
  split3 r;
  for (std::size_t d = 0; d < s.size(); ++d)
    (d < axis ? r.outer : d < axis_end ? r.mid : r.inner) *= static_cast<std::size_t>(s[d]);
  return r;
}

inline void softmax(const op_env& env, const tensor& x, tensor& y, tensor* movable = nullptr) {
  if (!x.floating()) env.fail(errc::shape_mismatch, "Softmax of a non-float tensor");
  // opset < 13: flatten to [prod(0..axis), prod(axis..)] and normalise rows; 13+: along axis.
  const bool old = env.opset < 13;
  const std::size_t ax = env.axis(env.n.attr_int("axis", old ? 1 : -1), std::max<std::size_t>(x.rank(), 1));
  const split3 s = split_at(x.shape, ax, old ? x.rank() : ax + 1);
  y = env.copy_of(x, movable);  // x is not read after this (it may have been moved)
  if (y.size() == 0) return;
  std::vector<double> e(s.mid);
  for (std::size_t o = 0; o < s.outer; ++o)
    for (std::size_t i = 0; i < s.inner; ++i) {
      float* base = y.f.data() + o * s.mid * s.inner + i;
      float m = -std::numeric_limits<float>::infinity();
      for (std::size_t k = 0; k < s.mid; ++k) m = std::max(m, base[k * s.inner]);
      double sum = 0.0;
      for (std::size_t k = 0; k < s.mid; ++k) {
        // exp underflows to 0 below -745; masked attention scores (-1e4) would take libm's slow
        // underflow path.
        const double d = static_cast<double>(base[k * s.inner]) - m;
        e[k] = d < -800.0 ? 0.0 : std::exp(d);
        sum += e[k];
      }
      for (std::size_t k = 0; k < s.mid; ++k) base[k * s.inner] = static_cast<float>(e[k] / sum);
    }
}

inline void layer_norm(const op_env& env, const std::vector<const tensor*>& in,
                       std::vector<tensor>& out, tensor* movable = nullptr) {
  const tensor& x = *in[0];
  if (!x.floating() || in.size() < 2 || !in[1] || !in[1]->floating())
    env.fail(errc::shape_mismatch, "expected float X and Scale");
  const std::size_t ax = env.axis(env.n.attr_int("axis", -1), x.rank());
  const float eps = env.n.attr_float("epsilon", 1e-5f);
  const split3 s = split_at(x.shape, ax, x.rank());
  const std::size_t rows = s.outer, cols = s.mid;
  const tensor* sc = in[1];
  const tensor* b = in.size() > 2 ? in[2] : nullptr;
  if (!(sc->size() == cols || sc->size() == 1) || (b && !(b->floating() && (b->size() == cols || b->size() == 1))))
    env.fail(errc::shape_mismatch, "Scale and B must cover the normalised axes");
  out.resize(3);
  shape_t ms = x.shape;
  for (std::size_t d = ax; d < ms.size(); ++d) ms[d] = 1;
  out[0] = env.copy_of(x, movable);  // x is not read after this (it may have been moved)
  out[1] = env.make(dtype::float32, ms);
  out[2] = env.make(dtype::float32, ms);
  for (std::size_t r = 0; r < rows; ++r) {
    float* v = out[0].f.data() + r * cols;
    double mean = 0.0, var = 0.0;
    for (std::size_t k = 0; k < cols; ++k) mean += v[k];
    mean /= static_cast<double>(std::max<std::size_t>(cols, 1));
    for (std::size_t k = 0; k < cols; ++k) var += (v[k] - mean) * (v[k] - mean);
    var /= static_cast<double>(std::max<std::size_t>(cols, 1));
    const double inv = 1.0 / std::sqrt(var + eps);
    for (std::size_t k = 0; k < cols; ++k) {
      const float g = sc->f[sc->size() == 1 ? 0 : k];
      const float bb = b ? b->f[b->size() == 1 ? 0 : k] : 0.0f;
      v[k] = static_cast<float>((v[k] - mean) * inv) * g + bb;
    }
    out[1].f[r] = static_cast<float>(mean);
    out[2].f[r] = static_cast<float>(inv);
  }
}

// sum[o] += x[k] for every element k of x, o its index in `full` (x's shape with the reduced
// axes at extent 1), in element order.
inline void reduce_sum_strided(const tensor& x, const shape_t& full, std::vector<double>& sum) {
  const auto st = broadcast_strides(full, x.shape);  // x index -> output index
  std::vector<std::size_t> idx(x.rank(), 0);
  for (std::size_t k = 0; k < x.size(); ++k) {
    std::size_t o = 0;
    for (std::size_t d = 0; d < x.rank(); ++d) o += idx[d] * st[d];
    sum[o] += x.f[k];
    for (std::size_t d = x.rank(); d-- > 0;) {
      if (++idx[d] < static_cast<std::size_t>(x.shape[d])) break;
      idx[d] = 0;
    }
  }
}

inline void reduce_mean(const op_env& env, const std::vector<const tensor*>& in, tensor& y) {
  const tensor& x = *in[0];
  if (!x.floating()) env.fail_unsupported("ReduceMean of integers");
  std::vector<std::int64_t> axes = env.n.attr_ints("axes");
  if (env.opset >= 18 && in.size() > 1 && in[1]) {
    if (in[1]->floating()) env.fail(errc::shape_mismatch, "axes must be integers");
    axes = in[1]->i;
  }
  const bool keep = env.n.attr_int("keepdims", 1) != 0;
  std::vector<bool> red(x.rank(), false);
  if (axes.empty()) {
    if (env.opset >= 18 && env.n.attr_int("noop_with_empty_axes", 0) != 0) {
      y = x;
      return;
    }
    red.assign(x.rank(), true);
  }
  for (const auto a : axes) red[env.axis(a, x.rank())] = true;
  shape_t ys, full;
  for (std::size_t d = 0; d < x.rank(); ++d) {
    full.push_back(red[d] ? 1 : x.shape[d]);
    if (!red[d] || keep) ys.push_back(red[d] ? 1 : x.shape[d]);
  }
  tensor acc = env.make(dtype::float32, ys);
  std::vector<double> sum(acc.size(), 0.0);
  // Reduced axes all trailing: each output sums one contiguous run (the same order as below).
  std::size_t first = x.rank();
  while (first > 0 && red[first - 1]) --first;
  if (std::none_of(red.begin(), red.begin() + static_cast<std::ptrdiff_t>(first), [](bool r) { return r; })) {
    const std::size_t run = acc.size() ? x.size() / acc.size() : 0;
    for (std::size_t o = 0; o < acc.size(); ++o) {
      const float* r = x.f.data() + o * run;
      double t = 0.0;
      for (std::size_t k = 0; k < run; ++k) t += r[k];
      sum[o] = t;
    }
  } else {
    reduce_sum_strided(x, full, sum);
  }
  const double cnt = acc.size() ? static_cast<double>(x.size()) / static_cast<double>(acc.size()) : 1.0;
  for (std::size_t k = 0; k < acc.size(); ++k) acc.f[k] = static_cast<float>(sum[k] / cnt);
  y = std::move(acc);
}

// GlobalAveragePool / GlobalMaxPool: over every axis after the first two (sum in double).
inline void global_pool(const op_env& env, const tensor& x, tensor& y) {
  if (!x.floating() || x.rank() < 3) env.fail(errc::shape_mismatch, "expected a float [N, C, ...] input");
  shape_t ys = x.shape;
  for (std::size_t d = 2; d < ys.size(); ++d) ys[d] = 1;
  y = env.make(dtype::float32, ys);
  const std::size_t planes = static_cast<std::size_t>(x.shape[0] * x.shape[1]);
  const std::size_t hw = planes ? x.size() / planes : 0;
  const bool is_max = env.n.op_type == "GlobalMaxPool";
  for (std::size_t j = 0; j < planes; ++j) {
    const float* p = x.f.data() + j * hw;
    if (is_max) {
      float m = -std::numeric_limits<float>::infinity();
      for (std::size_t k = 0; k < hw; ++k) m = std::max(m, p[k]);
      y.f[j] = m;
    } else {
      double s = 0.0;
      for (std::size_t k = 0; k < hw; ++k) s += p[k];
      y.f[j] = static_cast<float>(s / static_cast<double>(std::max<std::size_t>(hw, 1)));
    }
  }
}

// Resize (and opset-10 semantics): nearest or (multi)linear, coordinate transformation modes
// half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric.
inline void resize(const op_env& env, const std::vector<const tensor*>& in, tensor& y) {
  const node& nd = env.n;
  const tensor& x = *in[0];
  if (!x.floating()) env.fail_unsupported("Resize of integers");
  const std::size_t r = x.rank();
  const std::string mode = nd.attr_string("mode", "nearest");
  if (mode != "nearest" && mode != "linear") env.fail_unsupported("mode \"" + mode + "\"");
  const bool v10 = env.opset < 11;
  const std::string ctm = v10 ? "asymmetric" : nd.attr_string("coordinate_transformation_mode", "half_pixel");
  if (ctm == "tf_crop_and_resize") env.fail_unsupported("coordinate_transformation_mode tf_crop_and_resize");
  if (nd.attr_int("antialias", 0) != 0) env.fail_unsupported("antialias");
  if (!nd.attr_ints("axes").empty()) env.fail_unsupported("the axes attribute");
  if (nd.attr_string("keep_aspect_ratio_policy", "stretch") != "stretch")
    env.fail_unsupported("keep_aspect_ratio_policy");
  const std::string nearest = v10 ? "floor" : nd.attr_string("nearest_mode", "round_prefer_floor");
  const tensor* scales = v10 ? (in.size() > 1 ? in[1] : nullptr) : (in.size() > 2 ? in[2] : nullptr);
  const tensor* sizes = v10 ? nullptr : (in.size() > 3 ? in[3] : nullptr);
  if (scales && scales->size() == 0) scales = nullptr;
  if (sizes && sizes->size() == 0) sizes = nullptr;
  std::vector<double> sc(r, 1.0);
  shape_t os(r);
  if (sizes) {
    if (sizes->floating() || sizes->size() != r) env.fail(errc::shape_mismatch, "sizes must be " + std::to_string(r) + " integers");
    for (std::size_t d = 0; d < r; ++d) {
      os[d] = sizes->i[d];
      if (os[d] < 0 || (x.shape[d] == 0 && os[d] > 0)) env.fail(errc::shape_mismatch, "invalid sizes");
      sc[d] = x.shape[d] ? static_cast<double>(os[d]) / static_cast<double>(x.shape[d]) : 1.0;
    }
  } else if (scales) {
    if (!scales->floating() || scales->size() != r) env.fail(errc::shape_mismatch, "scales must be " + std::to_string(r) + " floats");
    for (std::size_t d = 0; d < r; ++d) {
      sc[d] = scales->f[d];
      if (!(sc[d] > 0.0 && sc[d] < 1e6)) env.fail(errc::invalid_argument, "scales must be > 0");
      os[d] = static_cast<std::int64_t>(std::floor(static_cast<double>(x.shape[d]) * static_cast<float>(sc[d])));
    }
  } else {
    env.fail(errc::invalid_argument, "needs scales or sizes");
  }
  y = env.make(dtype::float32, os);
  if (y.size() == 0) return;
  if (mode == "linear" && r > 8) env.fail_unsupported("linear Resize of rank > 8");
  env.check_macs(static_cast<double>(y.size()) * static_cast<double>(mode == "linear" ? (std::size_t{1} << r) : r));
  // Per axis and output index: the source coordinate.
  std::vector<std::vector<double>> coord(r);
  for (std::size_t d = 0; d < r; ++d) {
    const double in_len = static_cast<double>(x.shape[d]), out_len = static_cast<double>(os[d]);
    coord[d].resize(static_cast<std::size_t>(os[d]));
    for (std::int64_t o = 0; o < os[d]; ++o) {
      const double xo = static_cast<double>(o);
      double c;
      if (ctm == "half_pixel") c = (xo + 0.5) / sc[d] - 0.5;
      else if (ctm == "pytorch_half_pixel") c = out_len > 1 ? (xo + 0.5) / sc[d] - 0.5 : 0.0;
      else if (ctm == "align_corners") {
        const double len = sizes ? out_len : in_len * sc[d];  // the unrounded length for scales
        c = len == 1 ? 0.0 : xo * (in_len - 1) / (len - 1);
      }
      else if (ctm == "asymmetric") c = xo / sc[d];
      else if (ctm == "tf_half_pixel_for_nn") c = (xo + 0.5) / sc[d];
      else if (ctm == "half_pixel_symmetric") {
        const double adj = out_len / (in_len * sc[d]), center = in_len / 2;
        c = center * (1 - adj) + (xo + 0.5) / sc[d] - 0.5;
      } else env.fail_unsupported("coordinate_transformation_mode \"" + ctm + "\"");
      coord[d][static_cast<std::size_t>(o)] = c;
    }
  }
  std::vector<std::size_t> xstride(r, 1);
  for (std::size_t d = r; d-- > 1;) xstride[d - 1] = xstride[d] * static_cast<std::size_t>(x.shape[d]);
  std::vector<std::size_t> idx(r, 0);
  const auto clampi = [](std::int64_t v, std::int64_t n) { return std::min(std::max<std::int64_t>(v, 0), n - 1); };
  for (std::size_t k = 0; k < y.size(); ++k) {
    if (mode == "nearest") {
      std::size_t off = 0;
      for (std::size_t d = 0; d < r; ++d) {
        const double c = coord[d][idx[d]];
        double v;
        if (nearest == "floor") v = std::floor(c);
        else if (nearest == "ceil") v = std::ceil(c);
        else if (nearest == "round_prefer_ceil") v = std::floor(c + 0.5);
        else if (nearest == "round_prefer_floor") v = c - std::floor(c) == 0.5 ? std::floor(c) : std::round(c);
        else env.fail_unsupported("nearest_mode \"" + nearest + "\"");
        off += static_cast<std::size_t>(clampi(static_cast<std::int64_t>(v), x.shape[d])) * xstride[d];
      }
      y.f[k] = x.f[off];
    } else {
      double acc = 0.0;
      for (std::size_t mask = 0; mask < (std::size_t{1} << r); ++mask) {
        double wgt = 1.0;
        std::size_t off = 0;
        for (std::size_t d = 0; d < r && wgt != 0.0; ++d) {
          const double c = std::min(std::max(coord[d][idx[d]], 0.0), static_cast<double>(x.shape[d] - 1));
          const double f = std::floor(c), t = c - f;
          const bool hi = (mask >> d) & 1u;
          wgt *= hi ? t : 1.0 - t;
          off += static_cast<std::size_t>(clampi(static_cast<std::int64_t>(f) + hi, x.shape[d])) * xstride[d];
        }
        if (wgt != 0.0) acc += wgt * x.f[off];
      }
      y.f[k] = static_cast<float>(acc);
    }
    for (std::size_t d = r; d-- > 0;) {
      if (++idx[d] < static_cast<std::size_t>(os[d])) break;
      idx[d] = 0;
    }
  }
}

}  // namespace adaquant::onnx::detail
