#include "quant/adam_kernel.hpp"

#include <cmath>

#include "core/simd.hpp"

namespace dsgq::quant {
namespace {

// torch's kernels, element by element (LibTorch 1.13 as built by Debian, AVX2 kernels compiled with FMA contraction,
// checked against it by the unit test): m.mul_(b1).add_(g, 1 - b1) as fma(g, 1 - b1, m * b1);
// v.mul_(b2).addcmul_(g, g, 1 - b2) as fma((1 - b2) * g, g, v * b2); denom = sqrt(v) / sqrt(bc2) + eps;
// p.addcdiv_(m, denom, -step) as p + ((-step) * m) / denom.
DSGQ_ALWAYS_INLINE void adam_body(float* __restrict p, float* __restrict m, float* __restrict v,
                                  const float* __restrict g, int64_t n, AdamCoefficients c) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = std::fma(gi, c.one_minus_beta1, m[i] * c.beta1);
    const float vi = std::fma(c.one_minus_beta2 * gi, gi, v[i] * c.beta2);
    const float denom = std::sqrt(vi) / c.sqrt_bc2 + c.eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] + (c.neg_step * mi) / denom;
  }
}

DSGQ_SIMD_FUNCTION(void, adam_loop, (float* p, float* m, float* v, const float* g, int64_t n, AdamCoefficients c),
                   (p, m, v, g, n, c), adam_body)

}  // namespace

void adam_update(float* p, float* m, float* v, const float* g, int64_t n, const AdamCoefficients& c) {
  adam_loop(p, m, v, g, n, c);
}

}  // namespace dsgq::quant
