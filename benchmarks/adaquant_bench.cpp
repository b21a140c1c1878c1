// One AdaQuant optimisation step (quantized forward + backward + Adam on V, bias, weight scales
// and the activation scale) against the plain FP32 forward of the same layer, at three shapes:
//   conv   64 -> 64 channels, 3x3, padding 1, 14x14 input, batch 32       W4A4 (step also
//          compared after a ReLU: _relu)
//   linear 512 -> 512, batch 256                                           W4A4
//   token  256 -> 1024 over 32 samples x 64 tokens (2048 rows: a transformer's feed-forward
//          layer, every token a row of the objective)                      W4A8
// Also the conv's W4A4 forward on integer codes (_on_codes), the step's forward where it applies.
// Weights per channel, symmetric; activations per tensor, affine. Counter: steps (or forwards) per
// second as items_per_second.

#include <adaquant/calibrate/adaquant.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace {

using namespace adaquant;

std::vector<float> random_vector(std::size_t n, float sd, unsigned seed, bool relu = false) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) {
    x = d(gen);
    if (relu && x < 0.0f) x = 0.0f;
  }
  return v;
}

layer_geometry conv_shape() {
  conv2d_geometry c;
  c.in_channels = c.out_channels = 64;
  c.in_h = c.in_w = 14;
  c.kernel_h = c.kernel_w = 3;
  c.pad_h = c.pad_w = 1;
  return layer_geometry::of(c);
}
layer_geometry linear_shape() { return layer_geometry::of(linear_geometry{512, 512}); }
layer_geometry token_shape() { return layer_geometry::of(linear_geometry{256, 1024}); }

struct layer_data {
  layer_geometry g;
  std::size_t batch;
  std::vector<float> w, b, x, y;
  layer_data(const layer_geometry& geom, std::size_t n) : g(geom), batch(n) {
    w = random_vector(g.weight_size(), 0.05f, 1);
    b = random_vector(g.out_channels(), 0.1f, 2);
    x = random_vector(n * g.input_per_sample(), 1.0f, 3, true);
    y.resize(n * g.output_per_sample());
    forward(y);
  }
  void forward(std::vector<float>& out, std::vector<float>* ws = nullptr) const {
    if (g.kind == layer_kind::linear)
      linear_forward(g.linear, x, w, b, out);
    else
      conv2d_forward(g.conv, x, w, b, out, output_activation::none, ws);
  }
};

void adaquant_step(benchmark::State& st, const layer_geometry& g, std::size_t n, int abits = 4,
                   std::size_t threads = 1, output_activation act = output_activation::none) {
  const layer_data d(g, n);
  layer_quant_config cfg;  // W4 per channel symmetric, A<abits> per tensor affine
  cfg.act_scheme.bits = abits;
  cfg.activation = act;
  layer_objective obj(g, d.w, d.b, d.x, d.y, cfg);
  obj.set_threads(threads);
  const initial_quant_params init = estimate_initial_params(
      obj, quantizers_of(obj.config(), range_method::min_max, range_method::min_max));
  layer_state s = obj.initial_state(init.weight, init.act);
  const std::size_t oc = g.out_channels(), k = g.weights_per_channel();
  adam av(s.weight_offset.size()), ab(oc), aws(oc), aas(1);
  std::vector<float> lr_v(oc, 1e-4f), lr_b(oc, 1e-3f), lr_s(oc, 1e-5f);
  std::vector<std::size_t> batch(n);
  for (std::size_t i = 0; i < n; ++i) batch[i] = i;
  layer_state grad;
  const auto step = [&] {
    const double loss = obj.gradient(s, batch, grad);
    av.step(s.weight_offset, grad.weight_offset, lr_v, k, 0, threads);  // as layer_trainer
    ab.step(s.bias, grad.bias, lr_b, 1);
    aws.step(s.weight_scale, grad.weight_scale, lr_s, 1);
    aas.step(s.act_scale, grad.act_scale, 1e-5f);
    return loss;
  };
  // Untimed: the first step touches every buffer for the first time (page faults, which dominate
  // a short run on ImageNet-size layers; an AdaQuant run pays them once per layer).
  benchmark::DoNotOptimize(step());
  for (auto _ : st) {
    benchmark::DoNotOptimize(step());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

// One step through detail::chunked_gradient: the step's samples in chunks of
// adaquant_options::chunk_macs, on st.range(0) threads (real time: the threads' wall clock).
void chunked_step(benchmark::State& st, const layer_geometry& g, std::size_t n) {
  const layer_data d(g, n);
  layer_quant_config cfg;
  layer_objective obj(g, d.w, d.b, d.x, d.y, cfg);
  const initial_quant_params init = estimate_initial_params(
      obj, quantizers_of(obj.config(), range_method::min_max, range_method::min_max));
  const layer_state s = obj.initial_state(init.weight, init.act);
  const std::size_t chunk = detail::chunk_samples(adaquant_options{}.chunk_macs, g, n);
  detail::chunked_gradient step(obj, chunk, static_cast<std::size_t>(st.range(0)));
  std::vector<std::size_t> batch(n);
  for (std::size_t i = 0; i < n; ++i) batch[i] = i;
  layer_state grad;
  for (auto _ : st) {
    const double loss = step(s, batch, grad, {}, {});
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
  }
  st.counters["chunks"] = static_cast<double>((n + chunk - 1) / chunk);
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

void fp32_forward(benchmark::State& st, const layer_geometry& g, std::size_t n) {
  const layer_data d(g, n);
  std::vector<float> y(d.y.size()), ws;
  for (auto _ : st) {
    d.forward(y, &ws);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

void BM_adaquant_step_conv64_3x3_14x14_b32(benchmark::State& st) {
  adaquant_step(st, conv_shape(), 32);
}
// The same step compared after a ReLU, as AdaQuant does for a convolution a ReLU follows (most
// of ResNet's): the error term and its slope per output element.
void BM_adaquant_step_conv64_3x3_14x14_b32_relu(benchmark::State& st) {
  adaquant_step(st, conv_shape(), 32, 4, 1, output_activation::relu);
}
void BM_fp32_forward_conv64_3x3_14x14_b32(benchmark::State& st) {
  fp32_forward(st, conv_shape(), 32);
}
// The same layer's W4A4 forward on integer codes (objectives/integer_conv.hpp: what the step's
// quantized forward runs where the CPU has AVX-512 VNNI; the scalar twin elsewhere), inputs and
// weights already on their grids; the codes are recovered and packed on every call, as in a step.
void BM_w4a4_forward_on_codes_conv64_3x3_14x14_b32(benchmark::State& st) {
  const layer_data d(conv_shape(), 32);
  const conv2d_geometry& c = d.g.conv;
  const float sx = 0.25f;
  std::vector<float> xq(d.x.size()), wq(d.w.size()), sw(c.out_channels, 0.02f);
  for (std::size_t i = 0; i < xq.size(); ++i)
    xq[i] = std::min(std::nearbyint(d.x[i] / sx), 15.0f) * sx;  // unsigned 4-bit, zero code 0
  for (std::size_t i = 0; i < wq.size(); ++i)
    wq[i] = std::clamp(std::nearbyint(d.w[i] / sw[0]), -8.0f, 7.0f) * sw[0];
  std::vector<float> y(d.y.size());
  detail::integer_conv ic(true);
  if (!ic.run(c, 32, xq.data(), sx, 0, 16, wq.data(), sw.data(), d.b.data(), y.data(), 1))
    st.SkipWithError("integer_conv declined its codes");
  for (auto _ : st) {
    benchmark::DoNotOptimize(
        ic.run(c, 32, xq.data(), sx, 0, 16, wq.data(), sw.data(), d.b.data(), y.data(), 1));
    benchmark::ClobberMemory();
  }
  st.counters["simd"] = detail::gather_product_u8_native ? 1.0 : 0.0;
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}
void BM_adaquant_step_linear512_b256(benchmark::State& st) {
  adaquant_step(st, linear_shape(), 256);
}
void BM_fp32_forward_linear512_b256(benchmark::State& st) { fp32_forward(st, linear_shape(), 256); }
void BM_adaquant_step_w4a8_token256x1024_32x64(benchmark::State& st) {
  adaquant_step(st, token_shape(), 32 * 64, 8);
}
void BM_fp32_forward_token256x1024_32x64(benchmark::State& st) {
  fp32_forward(st, token_shape(), 32 * 64);
}

// ImageNet-size layers (ResNet-18's 3x3 convolutions, 116 MMAC per sample each, and a 1x1
// downsample, 6.4 MMAC): one step at adaquant_options' default step bound (step_samples: 1 and
// 19 samples) and, as the baseline, at the former 50 samples. Counter: multiply-adds of the
// step's forward pass per second (a step costs about three forward passes).
layer_geometry resnet_conv(std::size_t c_in, std::size_t c_out, std::size_t hw, std::size_t k,
                           std::size_t stride) {
  conv2d_geometry c;
  c.in_channels = c_in;
  c.out_channels = c_out;
  c.in_h = c.in_w = hw;
  c.kernel_h = c.kernel_w = k;
  c.stride_h = c.stride_w = stride;
  c.pad_h = c.pad_w = k / 2;
  return layer_geometry::of(c);
}
void imagenet_step(benchmark::State& st, const layer_geometry& g, bool bounded) {
  const std::size_t n = bounded ? step_samples(adaquant_options{}, g) : 50;
  adaquant_step(st, g, n);
  st.counters["samples"] = static_cast<double>(n);
  st.counters["forward_MACs"] = benchmark::Counter(
      static_cast<double>(st.iterations() * n * g.out_positions() * g.weight_size()),
      benchmark::Counter::kIsRate);
}
void BM_adaquant_step_resnet18_layer1_3x3(benchmark::State& st) {
  imagenet_step(st, resnet_conv(64, 64, 56, 3, 1), st.range(0) != 0);
}
void BM_adaquant_step_resnet18_layer4_3x3(benchmark::State& st) {
  imagenet_step(st, resnet_conv(512, 512, 7, 3, 1), st.range(0) != 0);
}
void BM_adaquant_step_resnet18_downsample_1x1(benchmark::State& st) {
  imagenet_step(st, resnet_conv(64, 128, 56, 1, 2), st.range(0) != 0);
}
// The FP32 forward of ResNet-18's layer shapes at batch 8 (tools/torch_adaquant_step.py times
// PyTorch's on the same shapes).
void BM_fp32_forward_resnet18_layer1_3x3_b8(benchmark::State& st) {
  fp32_forward(st, resnet_conv(64, 64, 56, 3, 1), 8);
}
void BM_fp32_forward_resnet18_layer3_3x3_b8(benchmark::State& st) {
  fp32_forward(st, resnet_conv(256, 256, 14, 3, 1), 8);
}
void BM_fp32_forward_resnet18_downsample_1x1_b8(benchmark::State& st) {
  fp32_forward(st, resnet_conv(64, 128, 56, 1, 2), 8);
}
BENCHMARK(BM_fp32_forward_resnet18_layer1_3x3_b8)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fp32_forward_resnet18_layer3_3x3_b8)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fp32_forward_resnet18_downsample_1x1_b8)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_adaquant_step_resnet18_layer1_3x3)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_adaquant_step_resnet18_layer4_3x3)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_adaquant_step_resnet18_downsample_1x1)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);

// A bounded (one-sample) step of ResNet-18's 3x3 convs with its convolutions split over
// st.range(0) threads inside the sample (layer_objective::set_threads; real time).
void BM_threaded_step_resnet18_layer1_3x3(benchmark::State& st) {
  adaquant_step(st, resnet_conv(64, 64, 56, 3, 1), 1, 4, static_cast<std::size_t>(st.range(0)));
}
void BM_threaded_step_resnet18_layer4_3x3(benchmark::State& st) {
  adaquant_step(st, resnet_conv(512, 512, 7, 3, 1), 1, 4, static_cast<std::size_t>(st.range(0)));
}
BENCHMARK(BM_threaded_step_resnet18_layer1_3x3)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_threaded_step_resnet18_layer4_3x3)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// A step's gradient on 1 and 2 threads: the conv at batch 32 (8 chunks of 4 samples) and
// ResNet-18's downsample at its bounded step (19 samples, 5 chunks).
void BM_chunked_step_conv64_3x3_14x14_b32(benchmark::State& st) {
  chunked_step(st, conv_shape(), 32);
}
void BM_chunked_step_resnet18_downsample_1x1(benchmark::State& st) {
  const layer_geometry g = resnet_conv(64, 128, 56, 1, 2);
  chunked_step(st, g, step_samples(adaquant_options{}, g));
}
BENCHMARK(BM_chunked_step_conv64_3x3_14x14_b32)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_chunked_step_resnet18_downsample_1x1)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_adaquant_step_conv64_3x3_14x14_b32)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_adaquant_step_conv64_3x3_14x14_b32_relu)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fp32_forward_conv64_3x3_14x14_b32)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_w4a4_forward_on_codes_conv64_3x3_14x14_b32)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_adaquant_step_linear512_b256)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fp32_forward_linear512_b256)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_adaquant_step_w4a8_token256x1024_32x64)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fp32_forward_token256x1024_32x64)->Unit(benchmark::kMillisecond);

}  // namespace
