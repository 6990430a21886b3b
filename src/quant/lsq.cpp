#include "quant/lsq.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

namespace dsgq::quant {
namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per partial sum of the step's gradient
constexpr float kInf = std::numeric_limits<float>::infinity();

// Round half to even for |v| < 2^22 by the float adder itself (the default rounding mode); larger values stay
// large and end clamped. Inlined and branch-free, unlike a call to nearbyintf on a baseline x86-64 build.
inline float round_even(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return std::fabs(v) < 4194304.0f ? (v + kMagic) - kMagic : v;
}

// Branch-free loops over local copies of the loaded values, so that they vectorize (the masks are coin flips).
// Without a mask the callers pass u = x and p = -inf (nothing is below it).
void forward_loop(const float* __restrict x, const float* __restrict u, float* __restrict out, int64_t n, float s,
                  float inv, float z, float hi, float p) {
  for (int64_t i = 0; i < n; ++i) {
    const float xi = x[i], ui = u[i], c = round_even(xi * inv) + z;
    const float q = ((c < 0.0f ? 0.0f : (c > hi ? hi : c)) - z) * s;
    out[i] = ui < p ? xi : q;
  }
}

// The gradient w.r.t. x into gx, and the chunk's sum of the step's gradient terms (before grad_factor), summed in
// 16 lanes, so that the result does not depend on vector width or thread count.
double backward_loop(const float* __restrict x, const float* __restrict u, const float* __restrict g,
                     float* __restrict gx, float* __restrict terms, int64_t n, float inv, float z, float hi, float p) {
  for (int64_t i = 0; i < n; ++i) {
    const float xi = x[i], gi = g[i], ui = u[i];
    const float kept = ui < p ? 0.0f : 1.0f;  // 0/1 factors (exact), not branches
    const float xs = xi * inv, r = round_even(xs), code = r + z;
    const float below = code < 0.0f ? 1.0f : 0.0f, above = code > hi ? 1.0f : 0.0f;
    const float term = below * -z + above * (hi - z) + (1.0f - below - above) * (r - xs);
    gx[i] = gi * (1.0f - kept * (below + above));
    terms[i] = gi * term * kept;
  }
  constexpr int64_t kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) lanes[k] += terms[i + k];
  double sum = 0;
  for (; i < n; ++i) sum += terms[i];
  for (float v : lanes) sum += v;
  return sum;
}

void mix_loop(const float* __restrict q, const float* __restrict x, const float* __restrict u, float* __restrict out,
              int64_t n, float p) {
  for (int64_t i = 0; i < n; ++i) {
    const float qi = q[i], xi = x[i], ui = u[i];
    out[i] = ui < p ? xi : qi;
  }
}

// The dense layout x is in (channels-last when the network runs so, [runtime] channels_last): the element-wise loops
// below walk memory in order, so every operand must have x's strides.
at::MemoryFormat x_layout(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast)
             ? at::MemoryFormat::ChannelsLast
             : at::MemoryFormat::Contiguous;
}

// t with x's strides (a copy only when they differ).
at::Tensor like_layout(const at::Tensor& t, const at::Tensor& x) {
  return t.strides() == x.strides() ? t : t.contiguous(x_layout(x));
}

struct LsqDropFn : public torch::autograd::Function<LsqDropFn> {
  // zp, qmax as doubles; drop in [0, 1); u empty when drop is 0 (autograd takes no undefined inputs).
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& step,
                            const at::Tensor& u, double zp, double qmax, double grad_factor, double drop) {
    const float s = step.item<float>(), inv = 1.0f / s, z = static_cast<float>(zp), hi = static_cast<float>(qmax);
    const float p = static_cast<float>(drop);
    at::Tensor out = at::empty_like(x);
    const float* px = x.data_ptr<float>();
    const float* pu = u.numel() > 0 ? u.data_ptr<float>() : nullptr;
    float* po = out.data_ptr<float>();
    at::parallel_for(0, x.numel(), kChunk, [&](int64_t b, int64_t e) {
      forward_loop(px + b, (pu != nullptr ? pu : px) + b, po + b, e - b, s, inv, z, hi, pu != nullptr ? p : -kInf);
    });
    ctx->save_for_backward({x, step, u});
    ctx->saved_data["zp"] = zp;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["gf"] = grad_factor;
    ctx->saved_data["drop"] = drop;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &step = saved[1], &u = saved[2];
    const at::Tensor g = grads[0].contiguous(x_layout(x));
    const float s = step.item<float>(), inv = 1.0f / s;
    const float z = static_cast<float>(ctx->saved_data["zp"].toDouble());
    const float hi = static_cast<float>(ctx->saved_data["qmax"].toDouble());
    const float p = static_cast<float>(ctx->saved_data["drop"].toDouble());
    const float* px = x.data_ptr<float>();
    const float* pu = u.numel() > 0 ? u.data_ptr<float>() : nullptr;
    const float* pg = g.data_ptr<float>();
    at::Tensor gx = at::empty_like(x);
    float* pgx = gx.data_ptr<float>();
    const int64_t n = x.numel(), chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
    at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
      for (int64_t c = cb; c < ce; ++c) {
        const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
        std::vector<float> terms(static_cast<size_t>(e - b));
        partial[static_cast<size_t>(c)] = backward_loop(px + b, (pu != nullptr ? pu : px) + b, pg + b, pgx + b,
                                                        terms.data(), e - b, inv, z, hi, pu != nullptr ? p : -kInf);
      }
    });
    double sum = 0;
    for (double v : partial) sum += v;
    at::Tensor gs = torch::full({1}, sum * ctx->saved_data["gf"].toDouble(), step.options());
    return {gx, gs, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor lsq_quantize(const at::Tensor& x, const at::Tensor& step, int64_t zero_point, int bits, double grad_factor) {
  const int64_t qmax = (int64_t(1) << bits) - 1;
  const at::Tensor zp = torch::full({1}, static_cast<double>(zero_point), step.options().requires_grad(false));
  return at::_fake_quantize_learnable_per_tensor_affine(x, step, zp, 0, qmax, grad_factor);
}

double lsq_grad_factor(int64_t elements, int bits) {
  return 1.0 / std::sqrt(static_cast<double>(elements) * (std::pow(2.0, bits) - 1.0));
}

at::Tensor drop_mix(const at::Tensor& q, const at::Tensor& x, const at::Tensor& u, double drop) {
  if (drop <= 0) return q;
  if (drop >= 1) return x;
  const bool plain = !q.requires_grad() && !x.requires_grad() && q.device().is_cpu() && q.scalar_type() == at::kFloat &&
                     x.scalar_type() == at::kFloat && u.scalar_type() == at::kFloat && q.is_contiguous() &&
                     x.is_contiguous() && u.is_contiguous() && q.sizes() == x.sizes() && u.sizes() == x.sizes();
  if (!plain) return at::where(u < drop, x, q);
  at::Tensor out = at::empty_like(x);  // one pass (at::where on CPU is ~10x slower here)
  const float *pq = q.data_ptr<float>(), *px = x.data_ptr<float>(), *pu = u.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const float p = static_cast<float>(drop);
  at::parallel_for(0, x.numel(), kChunk,
                   [&](int64_t b, int64_t e) { mix_loop(pq + b, px + b, pu + b, po + b, e - b, p); });
  return out;
}

at::Tensor lsq_drop(const at::Tensor& x, const at::Tensor& step, int64_t zero_point, int bits, double grad_factor,
                    const at::Tensor& u, double drop) {
  const bool dense = x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast);
  const bool fused =
      x.device().is_cpu() && x.scalar_type() == at::kFloat && dense &&
      (drop <= 0 || drop >= 1 || (u.defined() && u.sizes() == x.sizes() && u.scalar_type() == at::kFloat));
  if (!fused) return drop_mix(lsq_quantize(x, step, zero_point, bits, grad_factor), x, u, drop);
  if (drop >= 1) return x;
  const double qmax = std::pow(2.0, bits) - 1.0;
  return LsqDropFn::apply(x, step, drop > 0 ? like_layout(u, x) : at::empty({0}, x.options()),
                          static_cast<double>(zero_point), qmax, grad_factor, drop);
}

}  // namespace dsgq::quant
