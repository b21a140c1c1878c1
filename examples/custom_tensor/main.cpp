// Adapting your own tensor type: specialise adaquant::tensor_traits (a dozen lines), then every
// adaquant algorithm accepts it.
#include <adaquant/adaquant.hpp>

#include <cstdio>
#include <vector>

// The user's type: an NCHW activation buffer from some inference engine.
struct engine_tensor {
  std::vector<float> buffer;
  std::size_t n = 0, c = 0, h = 0, w = 0;
};

template <>
struct adaquant::tensor_traits<engine_tensor> {
  using value_type = float;
  static float* data(engine_tensor& t) { return t.buffer.data(); }
  static const float* data(const engine_tensor& t) { return t.buffer.data(); }
  static tensor_shape shape(const engine_tensor& t) {
    return tensor_shape::packed({t.n, t.c, t.h, t.w});  // row-major NCHW
  }
};

int main() {
  engine_tensor act{std::vector<float>(2 * 3 * 4 * 4), 2, 3, 4, 4};
  for (std::size_t i = 0; i < act.buffer.size(); ++i)
    act.buffer[i] = static_cast<float>(i % 17) * 0.37f - 1.5f;

  // Per-channel (axis 1 = C) 4-bit asymmetric fake quantization, written back in place.
  const adaquant::quant_scheme scheme{4, false, false, false};
  std::vector<float> lo(3, -1.5f), hi{2.0f, 4.0f, 4.42f};
  const auto params = adaquant::channel_params_from_ranges(scheme, lo, hi, /*axis=*/1);
  std::vector<std::uint8_t> ste_mask(act.buffer.size());
  engine_tensor out = act;
  adaquant::fake_quant_per_channel(act, out, params, ste_mask);

  std::size_t clamped = 0;
  for (auto m : ste_mask) clamped += m == 0;
  for (std::size_t ch = 0; ch < 3; ++ch)
    std::printf("channel %zu: scale %.5f zero_point %d\n", ch, params.scale[ch],
                params.zero_point[ch]);
  std::printf("x[5] = %.4f -> %.4f; %zu of %zu values clamped\n", act.buffer[5], out.buffer[5],
              clamped, ste_mask.size());
  return 0;
}
