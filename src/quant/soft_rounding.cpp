#include "quant/soft_rounding.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/simd.hpp"
#include "quant/adaround.hpp"

namespace dsgq::quant {
namespace {

constexpr int64_t kGrain = 1 << 15;

// torch rounds a double scalar to the tensor's float32 before the element-wise operation.
const float kStretch = static_cast<float>(kZeta - kGamma), kShift = static_cast<float>(kGamma);

// clamp(sig * stretch + shift, 0, 1): torch's mul, add and clamp (std::min(std::max(a, lo), hi)).
DSGQ_ALWAYS_INLINE void rect_fwd_body(const float* __restrict sig, float* __restrict h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float t = sig[i] * kStretch + kShift;
    h[i] = std::min(std::max(t, 0.0f), 1.0f);
  }
}

// clamp's backward (where(0 <= t <= 1, g, 0)), the mul's (times stretch), sigmoid's ((g * (1 - y)) * y).
DSGQ_ALWAYS_INLINE void rect_bwd_body(const float* __restrict sig, const float* __restrict g, float* __restrict gv,
                                      int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float y = sig[i];
    const float t = y * kStretch + kShift;
    const float gt = (t >= 0.0f && t <= 1.0f) ? g[i] : 0.0f;
    const float gs = gt * kStretch;
    gv[i] = (gs * (1.0f - y)) * y;
  }
}

// One channel: (clamp((floor + h) + z, 0, qmax) - z) * s.
DSGQ_ALWAYS_INLINE void soft_fwd_body(const float* __restrict fl, const float* __restrict h, float* __restrict out,
                                      int64_t n, float z, float s, float qmax) {
  for (int64_t i = 0; i < n; ++i) {
    const float b = (fl[i] + h[i]) + z;
    out[i] = (std::min(std::max(b, 0.0f), qmax) - z) * s;
  }
}

// The mul's backward (g * s), the sub's and adds' (identity), clamp's (where(0 <= b <= qmax, ., 0)).
DSGQ_ALWAYS_INLINE void soft_bwd_body(const float* __restrict fl, const float* __restrict h, const float* __restrict g,
                                      float* __restrict gh, int64_t n, float z, float s, float qmax) {
  for (int64_t i = 0; i < n; ++i) {
    const float b = (fl[i] + h[i]) + z;
    const float gd = g[i] * s;
    gh[i] = (b >= 0.0f && b <= qmax) ? gd : 0.0f;
  }
}

// |2h - 1|: torch's mul by 2, sub of 1, abs.
DSGQ_ALWAYS_INLINE void reg_fwd_body(const float* __restrict h, float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::fabs(h[i] * 2.0f - 1.0f);
}

// The regulariser's gradient w.r.t. h from p = |2h - 1|^(beta - 1) and ng = -(incoming gradient): rsub's backward
// (negation), pow's (ng * (beta * p)), abs's (times sgn(2h - 1)), the mul's (times 2).
DSGQ_ALWAYS_INLINE void reg_bwd_body(const float* __restrict h, const float* __restrict p, float* __restrict gh,
                                     int64_t n, float ng, float beta) {
  for (int64_t i = 0; i < n; ++i) {
    const float u = h[i] * 2.0f - 1.0f;
    const float sgn = u > 0.0f ? 1.0f : (u < 0.0f ? -1.0f : 0.0f);
    gh[i] = ((ng * (p[i] * beta)) * sgn) * 2.0f;
  }
}

DSGQ_SIMD_FUNCTION(void, reg_fwd, (const float* h, float* x, int64_t n), (h, x, n), reg_fwd_body)
DSGQ_SIMD_FUNCTION(void, reg_bwd, (const float* h, const float* p, float* gh, int64_t n, float ng, float beta),
                   (h, p, gh, n, ng, beta), reg_bwd_body)
DSGQ_SIMD_FUNCTION(void, rect_fwd, (const float* sig, float* h, int64_t n), (sig, h, n), rect_fwd_body)
DSGQ_SIMD_FUNCTION(void, rect_bwd, (const float* sig, const float* g, float* gv, int64_t n), (sig, g, gv, n),
                   rect_bwd_body)
DSGQ_SIMD_FUNCTION(void, soft_fwd, (const float* fl, const float* h, float* out, int64_t n, float z, float s, float q),
                   (fl, h, out, n, z, s, q), soft_fwd_body)
DSGQ_SIMD_FUNCTION(void, soft_bwd,
                   (const float* fl, const float* h, const float* g, float* gh, int64_t n, float z, float s, float q),
                   (fl, h, g, gh, n, z, s, q), soft_bwd_body)

bool fusable(const at::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous();
}

struct RectifiedSigmoidFn : public torch::autograd::Function<RectifiedSigmoidFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& v) {
    const at::Tensor sig = at::sigmoid(v);
    at::Tensor h = at::empty_like(sig);
    const float* ps = sig.data_ptr<float>();
    float* ph = h.data_ptr<float>();
    at::parallel_for(0, sig.numel(), kGrain, [&](int64_t b, int64_t e) { rect_fwd(ps + b, ph + b, e - b); });
    ctx->save_for_backward({sig});
    return h;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor sig = ctx->get_saved_variables()[0];
    const at::Tensor g = grads[0].contiguous();
    at::Tensor gv = at::empty_like(sig);
    const float* ps = sig.data_ptr<float>();
    const float* pg = g.data_ptr<float>();
    float* pv = gv.data_ptr<float>();
    at::parallel_for(0, sig.numel(), kGrain, [&](int64_t b, int64_t e) { rect_bwd(ps + b, pg + b, pv + b, e - b); });
    return {gv};
  }
};

// Per-channel loop over [C, inner] with z and s read as float32 (torch's float32 arithmetic on the broadcast views).
template <typename F>
void per_channel_loop(const at::Tensor& zero_point, const at::Tensor& scale, int64_t channels, int64_t inner, F f) {
  const at::Tensor z = zero_point.to(at::kFloat).contiguous(), s = scale.to(at::kFloat).contiguous();
  const float* pz = z.data_ptr<float>();
  const float* ps = s.data_ptr<float>();
  at::parallel_for(0, channels, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, inner)), [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) f(c * inner, pz[c], ps[c]);
  });
}

struct SoftWeightFn : public torch::autograd::Function<SoftWeightFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h, const at::Tensor& floor,
                            const at::Tensor& zero_point, const at::Tensor& scale, double qmax) {
    at::Tensor out = at::empty_like(h);
    const int64_t channels = h.size(0), inner = channels > 0 ? h.numel() / channels : 0;
    const float* pf = floor.data_ptr<float>();
    const float* ph = h.data_ptr<float>();
    float* po = out.data_ptr<float>();
    const float q = static_cast<float>(qmax);
    per_channel_loop(zero_point, scale, channels, inner,
                     [&](int64_t o, float z, float s) { soft_fwd(pf + o, ph + o, po + o, inner, z, s, q); });
    ctx->save_for_backward({h, floor, zero_point, scale});
    ctx->saved_data["qmax"] = qmax;
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &h = saved[0], &floor = saved[1];
    const at::Tensor g = grads[0].contiguous();
    at::Tensor gh = at::empty_like(h);
    const int64_t channels = h.size(0), inner = channels > 0 ? h.numel() / channels : 0;
    const float* pf = floor.data_ptr<float>();
    const float* ph = h.data_ptr<float>();
    const float* pg = g.data_ptr<float>();
    float* pgh = gh.data_ptr<float>();
    const float q = static_cast<float>(ctx->saved_data["qmax"].toDouble());
    per_channel_loop(saved[2], saved[3], channels, inner,
                     [&](int64_t o, float z, float s) { soft_bwd(pf + o, ph + o, pg + o, pgh + o, inner, z, s, q); });
    return {gh, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct RegularizerFn : public torch::autograd::Function<RegularizerFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h, double beta) {
    at::Tensor x = at::empty_like(h);
    const float* ph = h.data_ptr<float>();
    float* px = x.data_ptr<float>();
    at::parallel_for(0, h.numel(), kGrain, [&](int64_t b, int64_t e) { reg_fwd(ph + b, px + b, e - b); });
    ctx->save_for_backward({h, x});
    ctx->saved_data["beta"] = beta;
    return (1.0 - x.pow(beta)).sum();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &h = saved[0], &x = saved[1];
    const double beta = ctx->saved_data["beta"].toDouble();
    at::Tensor gh = at::empty_like(h);
    if (beta == 0.0) return {gh.zero_(), at::Tensor()};  // pow's backward at exponent 0
    const at::Tensor p = x.pow(beta - 1.0);              // torch's pow, its special cases included
    const float ng = -grads[0].item<float>();
    const float* ph = h.data_ptr<float>();
    const float* pp = p.data_ptr<float>();
    float* pg = gh.data_ptr<float>();
    const float bf = static_cast<float>(beta);
    at::parallel_for(0, h.numel(), kGrain,
                     [&](int64_t b, int64_t e) { reg_bwd(ph + b, pp + b, pg + b, e - b, ng, bf); });
    return {gh, at::Tensor()};
  }
};

}  // namespace

at::Tensor rectified_sigmoid_ref(const at::Tensor& v) { return (v.sigmoid() * (kZeta - kGamma) + kGamma).clamp(0, 1); }

at::Tensor soft_weight_ref(const at::Tensor& h, const at::Tensor& floor, const at::Tensor& zero_point,
                           const at::Tensor& scale, double qmax) {
  const at::Tensor s = per_channel(scale, floor), z = per_channel(zero_point, floor);
  return (floor + h + z).clamp(0, qmax).sub(z).mul(s);
}

at::Tensor rounding_regularizer_ref(const at::Tensor& h, double beta) {
  return (1.0 - (2.0 * h - 1.0).abs().pow(beta)).sum();
}

at::Tensor rounding_regularizer(const at::Tensor& h, double beta) {
  return fusable(h) ? RegularizerFn::apply(h, beta) : rounding_regularizer_ref(h, beta);
}

at::Tensor rectified_sigmoid(const at::Tensor& v) {
  return fusable(v) ? RectifiedSigmoidFn::apply(v) : rectified_sigmoid_ref(v);
}

at::Tensor soft_weight(const at::Tensor& h, const at::Tensor& floor, const at::Tensor& zero_point,
                       const at::Tensor& scale, double qmax) {
  const bool fused = fusable(h) && fusable(floor) && h.sizes() == floor.sizes() && h.dim() >= 1 &&
                     !floor.requires_grad() && !zero_point.requires_grad() && !scale.requires_grad() &&
                     zero_point.device().is_cpu() && scale.device().is_cpu() && zero_point.numel() == h.size(0) &&
                     scale.numel() == h.size(0) && zero_point.is_floating_point() &&
                     scale.scalar_type() == at::kFloat && zero_point.scalar_type() == at::kFloat;
  return fused ? SoftWeightFn::apply(h, floor, zero_point, scale, qmax)
               : soft_weight_ref(h, floor, zero_point, scale, qmax);
}

}  // namespace dsgq::quant
