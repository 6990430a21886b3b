#pragma once
// The element loop of quant::FusedAdam (quant/adam.hpp), without torch: compiled on its own with -fno-math-errno so
// that the square root vectorizes (IEEE square root either way: the same bits). Local.
#include <cstdint>

namespace dsgq::quant {

struct AdamCoefficients {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, sqrt_bc2, eps, neg_step;
};

// n elements: m = fma(g, 1 - b1, m * b1); v = fma((1 - b2) * g, g, v * b2); p += (neg_step * m) / (sqrt(v) /
// sqrt_bc2 + eps), the variant chosen by the CPU's features (core/simd.hpp).
void adam_update(float* p, float* m, float* v, const float* g, int64_t n, const AdamCoefficients& c);

}  // namespace dsgq::quant
