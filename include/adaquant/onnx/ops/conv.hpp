#pragma once
// Conv (1-D and 2-D, groups, strides, pads, auto_pad, dilations), ConvTranspose, and the pooling
// ops that share their window arithmetic. Conv is direct: per sample and group, the input is
// copied into a zero-bordered buffer and kernels/conv.hpp's gathered product computes every
// output channel of every position (output channels in vector lanes, taps summed in a fixed
// order, so a sample's result depends on nothing else in the batch); depthwise convs (one input
// and one output channel per group) run a direct loop per channel.

#include <adaquant/core/numeric.hpp>
#include <adaquant/kernels/conv.hpp>
#include <adaquant/onnx/ops/node.hpp>
#include <adaquant/onnx/scratch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace adaquant::onnx::detail {

// 2-D window geometry (a 1-D op has h = kh = 1).
struct window {
  std::int64_t h = 1, w = 1, kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  std::int64_t pt = 0, pl = 0, pb = 0, pr = 0, ho = 1, wo = 1;
  [[nodiscard]] bool symmetric_pads() const noexcept { return pt == pb && pl == pr; }
};

// Resolves kernel, strides, dilations, pads/auto_pad and the output size for spatial extents
// `in` (1 or 2 of them) and kernel extents `k`. ceil_mode for pools.
inline window resolve_window(const op_env& env, const shape_t& in, const shape_t& k,
                             bool ceil_mode = false) {
  const node& n = env.n;
  const std::size_t sp = in.size();
  if (!(sp == 1 || sp == 2) || k.size() != sp)
    env.fail_unsupported("only 1-D and 2-D windows are supported, got " + std::to_string(sp) +
                         " spatial axes");
  const auto strides = n.attr_ints("strides", shape_t(sp, 1));
  const auto dil = n.attr_ints("dilations", shape_t(sp, 1));
  auto pads = n.attr_ints("pads", shape_t(2 * sp, 0));
  if (strides.size() != sp || dil.size() != sp || pads.size() != 2 * sp)
    env.fail(errc::shape_mismatch, "strides, dilations or pads do not match " +
                                       std::to_string(sp) + " spatial axes");
  for (std::size_t a = 0; a < sp; ++a)
    if (!(k[a] >= 1 && strides[a] >= 1 && dil[a] >= 1 && pads[a] >= 0 && pads[a + sp] >= 0 &&
          k[a] <= (1 << 20) && strides[a] <= (1 << 20) && dil[a] <= (1 << 20) &&
          pads[a] <= (1 << 20) && pads[a + sp] <= (1 << 20)))
      env.fail(errc::invalid_argument, "kernel, strides and dilations must be >= 1 and pads >= 0");
  const std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
  std::vector<std::int64_t> out(sp);
  for (std::size_t a = 0; a < sp; ++a) {
    const std::int64_t ext = (k[a] - 1) * dil[a] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out[a] = (in[a] + strides[a] - 1) / strides[a];
      const std::int64_t total = std::max<std::int64_t>(0, (out[a] - 1) * strides[a] + ext - in[a]);
      const std::int64_t small = total / 2;
      pads[a] = auto_pad == "SAME_UPPER" ? small : total - small;
      pads[a + sp] = total - pads[a];
    } else if (auto_pad == "VALID") {
      pads[a] = pads[a + sp] = 0;
      out[a] = in[a] >= ext ? (in[a] - ext) / strides[a] + 1 : 0;
    } else if (auto_pad == "NOTSET") {
      const std::int64_t span = in[a] + pads[a] + pads[a + sp] - ext;
      if (span < 0)
        env.fail(errc::shape_mismatch, "the window is larger than the padded input");
      out[a] = (ceil_mode ? (span + strides[a] - 1) / strides[a] : span / strides[a]) + 1;
      if (ceil_mode && (out[a] - 1) * strides[a] >= in[a] + pads[a]) --out[a];
    } else {
      env.fail(errc::invalid_argument, "auto_pad \"" + auto_pad + "\" is not valid");
    }
    if (out[a] < 1) env.fail(errc::shape_mismatch, "the output would be empty");
  }
  window g;
  const std::size_t o = sp - 1;  // the w axis
  g.w = in[o], g.kw = k[o], g.sw = strides[o], g.dw = dil[o], g.pl = pads[o], g.pr = pads[o + sp];
  g.wo = out[o];
  if (sp == 2) {
    g.h = in[0], g.kh = k[0], g.sh = strides[0], g.dh = dil[0], g.pt = pads[0], g.pb = pads[sp];
    g.ho = out[0];
  }
  return g;
}

// Range [lo, hi) of output positions o with 0 <= o * s - p + j * d < n.
inline std::pair<std::int64_t, std::int64_t> valid_range(std::int64_t out, std::int64_t s,
                                                         std::int64_t p, std::int64_t jd,
                                                         std::int64_t n) {
  const std::int64_t a = p - jd;  // need o * s >= a
  const std::int64_t lo = a <= 0 ? 0 : (a + s - 1) / s;
  const std::int64_t b = n - 1 + p - jd;  // need o * s <= b
  const std::int64_t hi = b < 0 ? 0 : std::min(out, b / s + 1);
  return {std::min(lo, hi), hi};
}

// dst[0, n) = src[0, n) for short rows (a plane's row, n of a few to a few dozen floats): whole
// 8- or 4-float blocks, the last one overlapping the previous, where a loop would spend more on
// its scalar tail than on the copy. dst and src must not overlap.
inline void copy_row(float* dst, const float* src, std::int64_t n) noexcept {
  if (n >= 8) {
    for (std::int64_t i = 0; i + 8 <= n; i += 8) std::memcpy(dst + i, src + i, 8 * sizeof(float));
    std::memcpy(dst + n - 8, src + n - 8, 8 * sizeof(float));
  } else if (n >= 4) {
    std::memcpy(dst, src, 4 * sizeof(float));
    std::memcpy(dst + n - 4, src + n - 4, 4 * sizeof(float));
  } else {
    for (std::int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

// Depthwise convs (one input and one output channel per group), one channel at a time. The
// zero-padded input plane is split into sh * sw phases by row and column remainder (phase
// (a, b) holds padded rows a, a + sh, ... and columns b, b + sw, ...). Tap (i, j) then reads
// phase ((i dh) % sh, (j dw) % sw) at a constant offset ((i dh) / sh) wq + (j dw) / sw from output
// position q = oh wq + ow, so each tap is one contiguous multiply-add over every output row at
// once (`ext` holds ho * wq sums; the columns past wo are discarded). Output (oh, ow) sums its
// taps in (i, j) order, each fused where the target has FMA (mul_add); with stride 1 there is a
// single phase, and strides of 2 are computed at stride 1 and subsampled (the same sums).
class depthwise_planes {
 public:
  explicit depthwise_planes(const window& out) : g_(out), c_(out) {
    const std::int64_t hp = out.h + out.pt + out.pb, wp = out.w + out.pl + out.pr;
    if (out.sh <= 2 && out.sw <= 2 && out.sh * out.sw > 1) {
      // Stride 2: every stride-1 output, then every sh-th row and sw-th column of them. Up to 4x
      // the multiply-adds, but contiguous, which beats splitting short rows into phases.
      c_.sh = c_.sw = 1;
      c_.ho = hp - (out.kh - 1) * out.dh;
      c_.wo = wp - (out.kw - 1) * out.dw;
    }
    const window& g = c_;
    hq_ = (hp + g.sh - 1) / g.sh;
    wq_ = (wp + g.sw - 1) / g.sw;
    // The last tap of the last output reads (ho - 1 + iq) wq + wq - 1 + jq of its phase.
    const std::int64_t iq = (g.kh - 1) * g.dh / g.sh, jq = (g.kw - 1) * g.dw / g.sw;
    // The sums run over whole vectors: up to lanes - 1 positions past ho * wq, discarded, whose
    // reads stay inside the (zero) phase.
    constexpr auto lanes = static_cast<std::int64_t>(adaquant::detail::simd::lanes);
    const std::int64_t span = (g.ho * wq_ + lanes - 1) / lanes * lanes;
    phase_ = std::max(hq_ * wq_, (g.ho + iq) * wq_ + jq + span - g.ho * wq_);
    phases_.assign(static_cast<std::size_t>(phase_ * g.sh * g.sw), 0.0f);  // borders stay 0
    ext_.resize(static_cast<std::size_t>(span));
    for (std::int64_t r = 0; r < g.h; ++r) {  // input row r is padded row r + pt
      const std::int64_t a = (r + g.pt) % g.sh, rq = (r + g.pt) / g.sh;
      row_.push_back(a * g.sw * phase_ + rq * wq_);
    }
    for (std::int64_t b = 0; b < g.sw; ++b) {  // columns cq with 0 <= cq sw + b - pl < w
      const auto [c0, c1] = valid_range(wq_, g.sw, g.pl, b, g.w);
      cols_.push_back(c0);
      cols_.push_back(c1);
    }
    for (std::int64_t i = 0; i < g.kh; ++i)
      for (std::int64_t j = 0; j < g.kw; ++j) {
        const std::int64_t a = i * g.dh % g.sh, b = j * g.dw % g.sw;
        tap_.push_back(phases_.data() + (a * g.sw + b) * phase_ + (i * g.dh / g.sh) * wq_ +
                       j * g.dw / g.sw);
      }
  }
  depthwise_planes(const depthwise_planes&) = delete;  // tap_ points into phases_
  depthwise_planes& operator=(const depthwise_planes&) = delete;

  // out[ho * wo] = bias + the conv of one input plane in[h * w] with its kh * kw taps wk.
  void run(const float* in, const float* wk, float bias, float* out) {
    const window& g = c_;
    for (std::int64_t r = 0; r < g.h; ++r) {
      float* row = phases_.data() + row_[static_cast<std::size_t>(r)];
      for (std::int64_t b = 0; b < g.sw; ++b) {
        float* dst = row + b * phase_;
        const float* src = in + r * g.w + b - g.pl;  // column cq of phase b is src[cq * sw]
        const std::int64_t c0 = cols_[static_cast<std::size_t>(2 * b)];
        const std::int64_t c1 = cols_[static_cast<std::size_t>(2 * b + 1)];
        if (g.sw == 1)
          copy_row(dst + c0, src + c0, c1 - c0);
        else
          for (std::int64_t cq = c0; cq < c1; ++cq) dst[cq] = src[cq * g.sw];
      }
    }
    float* ext = ext_.data();
    adaquant::detail::tap_sum_run(tap_.data(), wk, tap_.size(), bias, ext_.size(), ext);
    if (g.sh == g_.sh && g.sw == g_.sw) {
      for (std::int64_t oh = 0; oh < g_.ho; ++oh) copy_row(out + oh * g_.wo, ext + oh * wq_, g_.wo);
    } else {  // every sh-th row and sw-th column of the stride-1 sums
      for (std::int64_t oh = 0; oh < g_.ho; ++oh)
        for (std::int64_t ow = 0; ow < g_.wo; ++ow)
          out[oh * g_.wo + ow] = ext[oh * g_.sh * wq_ + ow * g_.sw];
    }
  }

 private:
  window g_;  // the conv's
  window c_;  // the one computed: g_, or g_ at stride 1 when g_'s strides are at most 2
  std::int64_t hq_ = 0, wq_ = 0, phase_ = 0;  // phase extents and size
  std::vector<float> phases_, ext_;
  std::vector<const float*> tap_;  // where each tap's reads start in its phase
  std::vector<std::int64_t> cols_;  // per column phase b: the columns [c0, c1) read from the input
  std::vector<std::int64_t> row_;   // per input row: where it starts in column phase 0 of its row phase
};

// The window of a Conv for input x and weight w (checks ranks and channels).
inline window conv_window(const op_env& env, const shape_t& x, const shape_t& w,
                          std::int64_t groups) {
  if (!(x.size() == 3 || x.size() == 4))
    env.fail_unsupported("Conv on a rank-" + std::to_string(x.size()) +
                         " input (only 1-D and 2-D convs are supported)");
  if (w.size() != x.size())
    env.fail(errc::shape_mismatch, "input " + shape_string(x) + " and weight " + shape_string(w) +
                                       " ranks differ");
  if (!(groups >= 1 && groups <= std::max<std::int64_t>(x[1], 1) && x[1] == w[1] * groups &&
        w[0] % groups == 0 && w[0] > 0))
    env.fail(errc::shape_mismatch, "input " + shape_string(x) + " does not fit weight " +
                                       shape_string(w) + " with group " + std::to_string(groups));
  const auto ks = env.n.attr_ints("kernel_shape", shape_t(w.begin() + 2, w.end()));
  if (ks != shape_t(w.begin() + 2, w.end()))
    env.fail(errc::shape_mismatch, "kernel_shape differs from the weight's " + shape_string(w));
  return resolve_window(env, shape_t(x.begin() + 2, x.end()), ks);
}

// y[n, o] = conv(x, w) + bias for `groups` groups, each output channel's taps summed in (input
// channel, row, column) order (kernels/reference_conv.hpp).
inline void direct_conv(const op_env& env, const float* x, std::int64_t n, std::int64_t c,
                        const float* w, std::int64_t o, std::int64_t groups, const window& g,
                        const float* bias, float* y) {
  const std::int64_t cg = c / groups, og = o / groups;
  const std::int64_t hp = g.h + g.pt + g.pb, wp = g.w + g.pl + g.pr, k = cg * g.kh * g.kw;
  const std::int64_t p = g.ho * g.wo;
  if (static_cast<double>(cg) * static_cast<double>(hp) * static_cast<double>(wp) >=
      static_cast<double>(std::numeric_limits<adaquant::detail::gather_index>::max()))
    env.fail_unsupported("a padded input plane set of more than 2^32 values per group");
  constexpr auto lanes = static_cast<std::int64_t>(adaquant::detail::simd::lanes);
  const std::int64_t ldw = (og + lanes - 1) / lanes * lanes;  // zero weights pad the last vector
  std::vector<adaquant::detail::gather_index> base(static_cast<std::size_t>(p)), off(static_cast<std::size_t>(k));
  for (std::int64_t oh = 0; oh < g.ho; ++oh)
    for (std::int64_t ow = 0; ow < g.wo; ++ow)
      base[static_cast<std::size_t>(oh * g.wo + ow)] =
          static_cast<adaquant::detail::gather_index>(oh * g.sh * wp + ow * g.sw);
  for (std::int64_t ci = 0; ci < cg; ++ci)
    for (std::int64_t i = 0; i < g.kh; ++i)
      for (std::int64_t j = 0; j < g.kw; ++j)
        off[static_cast<std::size_t>((ci * g.kh + i) * g.kw + j)] =
            static_cast<adaquant::detail::gather_index>(ci * hp * wp + i * g.dh * wp + j * g.dw);
  // Output channels in blocks of 1 to 3 vectors, split as the kernel splits them
  // (kernels/simd/conv.hpp), each block's weights packed on their own, [k][block width]: a block
  // then streams its taps from consecutive memory. (One [k][og] matrix strides og floats per tap:
  // for a 512-channel layer a TLB page every two taps, which left the kernel waiting on loads.)
  // Every channel keeps the kernel's sequence of multiply-adds, so the bits do not change.
  std::vector<std::pair<std::int64_t, std::int64_t>> blocks;  // (first vector, vectors)
  for (std::int64_t v = 0, vectors = ldw / lanes; v < vectors;) {
    const std::int64_t left = vectors - v, take = left == 1 ? 1 : left % 2 == 1 ? 3 : 2;
    blocks.emplace_back(v, take);
    v += take;
  }
  struct packed_tag;
  struct padded_tag;
  const auto packed_size = static_cast<std::size_t>(k * ldw);
  const thread_scratch<packed_tag> packed_space(packed_size);
  float* const packed = packed_space.data();
  const bool unpadded = g.pt == 0 && g.pb == 0 && g.pl == 0 && g.pr == 0;  // read x in place
  const std::size_t padded_size = unpadded ? 0 : static_cast<std::size_t>(cg * hp * wp);
  const thread_scratch<padded_tag> padded_space(padded_size);
  float* const padded = padded_space.data();
  std::fill(padded, padded + padded_size, 0.0f);  // borders stay 0
  for (std::int64_t gi = 0; gi < groups; ++gi) {
    std::fill(packed, packed + packed_size, 0.0f);
    for (const auto& [v0, take] : blocks) {
      float* pb = packed + k * v0 * lanes;
      const std::int64_t width = take * lanes, c0 = v0 * lanes, cn = std::min(width, og - c0);
      for (std::int64_t j = 0; j < cn; ++j)
        for (std::int64_t r = 0; r < k; ++r) pb[r * width + j] = w[(gi * og + c0 + j) * k + r];
    }
    for (std::int64_t ni = 0; ni < n; ++ni) {
      const float* xs = x + (ni * c + gi * cg) * g.h * g.w;
      if (!unpadded)
        for (std::int64_t ci = 0; ci < cg; ++ci)
          for (std::int64_t r = 0; r < g.h; ++r)
            copy_row(padded + (ci * hp + r + g.pt) * wp + g.pl, xs + (ci * g.h + r) * g.w, g.w);
      float* ys = y + (ni * o + gi * og) * p;
      for (const auto& [v0, take] : blocks) {
        const std::int64_t c0 = v0 * lanes, cn = std::min(take * lanes, og - c0);
        adaquant::detail::gather_product_run(
            unpadded ? xs : padded, base.data(), static_cast<std::size_t>(p), off.data(),
            static_cast<std::size_t>(k), packed + k * c0, static_cast<std::size_t>(take * lanes),
            bias ? bias + gi * og + c0 : nullptr, static_cast<std::size_t>(cn), ys + c0 * p,
            static_cast<std::size_t>(p));
      }
    }
  }
}

// y = conv(x, w) + bias; x fake-quantized first when `input_quant` (rounding as input_rounding).
inline void conv(const op_env& env, const tensor& x_in, const tensor& w, const float* bias,
                 tensor& y, const std::optional<quant_params>& input_quant = std::nullopt,
                 rounding_mode input_rounding = rounding_mode::pytorch) {
  if (!x_in.floating() || !w.floating()) env.fail_unsupported("integer Conv");
  const std::int64_t groups = env.n.attr_int("group", 1);
  const window g = conv_window(env, x_in.shape, w.shape, groups);
  tensor xq;
  const tensor* xp = &x_in;
  if (input_quant) {
    xq = env.fake_quant_copy(x_in, *input_quant, input_rounding);
    xp = &xq;
  }
  const tensor& x = *xp;
  const std::int64_t n = x.shape[0], c = x.shape[1], o = w.shape[0], cg = w.shape[1];
  const std::int64_t og = o / groups, k = cg * g.kh * g.kw, p = g.ho * g.wo;
  shape_t ys = {n, o};
  if (x.rank() == 4) ys.push_back(g.ho);
  ys.push_back(g.wo);
  env.check_macs(static_cast<double>(n) * o * p * k);
  y = env.make_for_overwrite(ys);  // direct_conv and depthwise_planes write every element
  float* yp = y.f.data();
  if (!(cg == 1 && og == 1)) {
    direct_conv(env, x.f.data(), n, c, w.f.data(), o, groups, g, bias, yp);
  } else {
    const std::int64_t hw = g.h * g.w;
    depthwise_planes planes(g);
    for (std::int64_t ni = 0; ni < n; ++ni)
      for (std::int64_t ci = 0; ci < o; ++ci) {
        float* plane = yp + (ni * o + ci) * p;
        planes.run(x.f.data() + (ni * c + ci) * hw, w.f.data() + ci * g.kh * g.kw,
                   bias ? bias[ci] : 0.0f, plane);
      }
  }
  env.recycle(xq);
}

// ConvTranspose (float only, direct loops): y[n, g*og + oc, oh, ow] +=
//   x[n, g*cg + ic, ih, iw] * w[g*cg + ic, oc, i, j] with oh = ih * s - pt + i * d.
inline void conv_transpose(const op_env& env, const tensor& x, const tensor& w, const float* bias,
                           tensor& y) {
  if (!x.floating() || !w.floating()) env.fail_unsupported("integer ConvTranspose");
  const node& nd = env.n;
  if (!(x.rank() == 3 || x.rank() == 4) || w.rank() != x.rank())
    env.fail_unsupported("ConvTranspose supports 1-D and 2-D inputs only");
  const std::int64_t groups = nd.attr_int("group", 1);
  const std::int64_t n = x.shape[0], c = x.shape[1];
  if (!(groups >= 1 && groups <= std::max<std::int64_t>(c, 1) && c == w.shape[0] && c % groups == 0))
    env.fail(errc::shape_mismatch, "input " + shape_string(x.shape) + " does not fit weight " +
                                       shape_string(w.shape));
  const std::size_t sp = x.rank() - 2;
  const shape_t in(x.shape.begin() + 2, x.shape.end()), k(w.shape.begin() + 2, w.shape.end());
  const auto strides = nd.attr_ints("strides", shape_t(sp, 1));
  const auto dil = nd.attr_ints("dilations", shape_t(sp, 1));
  const auto outpad = nd.attr_ints("output_padding", shape_t(sp, 0));
  auto pads = nd.attr_ints("pads", shape_t(2 * sp, 0));
  const auto out_shape = nd.attr_ints("output_shape");
  if (strides.size() != sp || dil.size() != sp || outpad.size() != sp || pads.size() != 2 * sp ||
      !(out_shape.empty() || out_shape.size() == sp))
    env.fail(errc::shape_mismatch, "attribute lengths do not match the spatial rank");
  const std::string auto_pad = nd.attr_string("auto_pad", "NOTSET");
  shape_t out(sp);
  for (std::size_t a = 0; a < sp; ++a) {
    constexpr std::int64_t big = std::int64_t{1} << 20;  // keeps the size arithmetic in range
    if (!(strides[a] >= 1 && dil[a] >= 1 && k[a] >= 1 && strides[a] <= 4096 && dil[a] <= 4096 &&
          k[a] <= big && outpad[a] >= 0 && outpad[a] < big && pads[a] >= 0 && pads[a] <= big &&
          pads[a + sp] >= 0 && pads[a + sp] <= big &&
          (out_shape.empty() || (out_shape[a] >= 1 && out_shape[a] <= (std::int64_t{1} << 40)))))
      env.fail(errc::invalid_argument,
               "strides, dilations and kernel must be >= 1, pads and output_padding >= 0");
    const std::int64_t full = strides[a] * (in[a] - 1) + outpad[a] + (k[a] - 1) * dil[a] + 1;
    if (!out_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out[a] = out_shape.empty() ? in[a] * strides[a] : out_shape[a];
      const std::int64_t total = std::max<std::int64_t>(0, full - out[a]);
      const bool upper = auto_pad != "SAME_LOWER";  // output_shape: as SAME_UPPER
      pads[a] = upper ? total / 2 : total - total / 2;
      pads[a + sp] = total - pads[a];
    } else {
      if (auto_pad == "VALID") pads[a] = pads[a + sp] = 0;
      out[a] = full - pads[a] - pads[a + sp];
    }
    if (out[a] < 1) env.fail(errc::shape_mismatch, "the output would be empty");
  }
  const std::int64_t og = w.shape[1], cg = c / groups, o = og * groups;
  const std::int64_t ih_n = sp == 2 ? in[0] : 1, iw_n = in[sp - 1];
  const std::int64_t kh = sp == 2 ? k[0] : 1, kw = k[sp - 1];
  const std::int64_t oh_n = sp == 2 ? out[0] : 1, ow_n = out[sp - 1];
  const std::int64_t sh = sp == 2 ? strides[0] : 1, sw = strides[sp - 1];
  const std::int64_t dh = sp == 2 ? dil[0] : 1, dw = dil[sp - 1];
  const std::int64_t pt = sp == 2 ? pads[0] : 0, pl = pads[sp - 1];
  shape_t ys = {n, o};
  ys.insert(ys.end(), out.begin(), out.end());
  env.check_macs(static_cast<double>(n) * c * ih_n * iw_n * og * kh * kw);
  y = env.make(dtype::float32, ys);
  for (std::int64_t ni = 0; ni < n; ++ni)
    for (std::int64_t gi = 0; gi < groups; ++gi)
      for (std::int64_t ic = 0; ic < cg; ++ic) {
        const float* xp = x.f.data() + ((ni * c + gi * cg + ic) * ih_n) * iw_n;
        for (std::int64_t oc = 0; oc < og; ++oc) {
          float* yp = y.f.data() + ((ni * o + gi * og + oc) * oh_n) * ow_n;
          const float* wp = w.f.data() + (((gi * cg + ic) * og + oc) * kh) * kw;
          for (std::int64_t ih = 0; ih < ih_n; ++ih)
            for (std::int64_t i = 0; i < kh; ++i) {
              const std::int64_t oh = ih * sh - pt + i * dh;
              if (oh < 0 || oh >= oh_n) continue;
              for (std::int64_t iw = 0; iw < iw_n; ++iw) {
                const float xv = xp[ih * iw_n + iw];
                for (std::int64_t j = 0; j < kw; ++j) {
                  const std::int64_t ow = iw * sw - pl + j * dw;
                  if (ow >= 0 && ow < ow_n) yp[oh * ow_n + ow] += xv * wp[i * kw + j];
                }
              }
            }
        }
      }
  if (bias) {
    const std::int64_t p = oh_n * ow_n;
    for (std::int64_t ni = 0; ni < n; ++ni)
      for (std::int64_t oi = 0; oi < o; ++oi)
        for (std::int64_t q = 0; q < p; ++q) y.f[static_cast<std::size_t>((ni * o + oi) * p + q)] += bias[oi];
  }
}

// MaxPool / AveragePool over 1-D or 2-D windows.
inline void pool(const op_env& env, const tensor& x, tensor& y) {
  const node& nd = env.n;
  const bool is_max = nd.op_type == "MaxPool";
  if (!x.floating()) env.fail_unsupported("integer pooling");
  if (!(x.rank() == 3 || x.rank() == 4))
    env.fail_unsupported("pooling on a rank-" + std::to_string(x.rank()) + " input");
  if (nd.attr_int("storage_order", 0) != 0) env.fail_unsupported("storage_order 1");
  const auto ks = nd.attr_ints("kernel_shape");
  const window g = resolve_window(env, shape_t(x.shape.begin() + 2, x.shape.end()), ks,
                                  nd.attr_int("ceil_mode", 0) != 0);
  const bool include_pad = nd.attr_int("count_include_pad", 0) != 0;
  const std::int64_t n = x.shape[0], c = x.shape[1], hw = g.h * g.w;
  shape_t ys = {n, c};
  if (x.rank() == 4) ys.push_back(g.ho);
  ys.push_back(g.wo);
  env.check_macs(static_cast<double>(n) * c * g.ho * g.wo * g.kh * g.kw);
  y = env.make(dtype::float32, ys);
  for (std::int64_t pl = 0; pl < n * c; ++pl) {
    const float* in = x.f.data() + pl * hw;
    float* out = y.f.data() + pl * g.ho * g.wo;
    for (std::int64_t oh = 0; oh < g.ho; ++oh)
      for (std::int64_t ow = 0; ow < g.wo; ++ow) {
        float m = -std::numeric_limits<float>::infinity();
        double s = 0.0;
        std::int64_t cnt = 0, padded = 0;
        for (std::int64_t i = 0; i < g.kh; ++i) {
          const std::int64_t ih = oh * g.sh - g.pt + i * g.dh;
          for (std::int64_t j = 0; j < g.kw; ++j) {
            const std::int64_t iw = ow * g.sw - g.pl + j * g.dw;
            if (ih >= -g.pt && ih < g.h + g.pb && iw >= -g.pl && iw < g.w + g.pr) ++padded;
            if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
            const float v = in[ih * g.w + iw];
            m = std::max(m, v);
            s += v;
            ++cnt;
          }
        }
        const std::int64_t div = include_pad ? padded : cnt;
        out[oh * g.wo + ow] = is_max ? m : static_cast<float>(s / static_cast<double>(std::max<std::int64_t>(div, 1)));
      }
  }
}

}  // namespace adaquant::onnx::detail
