#include "quant/lsq.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/simd.hpp"

namespace dsgq::quant {
namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per partial sum of the step's gradient
constexpr float kInf = std::numeric_limits<float>::infinity();

// Round half to even for |v| < 2^22 by the float adder itself (the default rounding mode); larger values stay
// large and end clamped. Inlined and branch-free, unlike a call to nearbyintf on a baseline x86-64 build.
DSGQ_ALWAYS_INLINE float round_even(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return std::fabs(v) < 4194304.0f ? (v + kMagic) - kMagic : v;
}

DSGQ_ALWAYS_INLINE uint64_t mix64_body(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Two uniforms per 64-bit hash, the 24-bit values through int32 (a vector conversion; exact).
DSGQ_ALWAYS_INLINE void fill_uniform_body(float* __restrict out, int64_t n, uint64_t key) {
  constexpr float kUnit = 1.0f / 16777216.0f;
  const int64_t pairs = n / 2;
  for (int64_t p = 0; p < pairs; ++p) {
    const uint64_t z = mix64_body(key + static_cast<uint64_t>(p + 1) * 0x9E3779B97F4A7C15ull);
    out[2 * p] = static_cast<float>(static_cast<int32_t>(z >> 40)) * kUnit;
    out[2 * p + 1] = static_cast<float>(static_cast<int32_t>((z >> 16) & 0xFFFFFF)) * kUnit;
  }
  if (n % 2 != 0) {
    const uint64_t z = mix64_body(key + static_cast<uint64_t>(pairs + 1) * 0x9E3779B97F4A7C15ull);
    out[n - 1] = static_cast<float>(static_cast<int32_t>(z >> 40)) * kUnit;
  }
}
DSGQ_SIMD_FUNCTION(void, fill_uniform_simd, (float* out, int64_t n, uint64_t key), (out, n, key), fill_uniform_body)

// The activation in front of the quantizer when it is fused into the same pass (act_lsq_drop): ReLU (a_hi = +inf)
// or ReLU6 (a_hi = 6), i.e. clamp(x, 0, a_hi); kAct false: none.
template <bool kAct>
DSGQ_ALWAYS_INLINE float activate(float x, float a_hi) {
  return kAct ? (x < 0.0f ? 0.0f : (x > a_hi ? a_hi : x)) : x;
}

// Branch-free loops over local copies of the loaded values, so that they vectorize (the masks are coin flips).
// Without a mask the callers pass u = x and p = -inf (nothing is below it).
template <bool kAct>
DSGQ_ALWAYS_INLINE void forward_body(const float* __restrict x, const float* __restrict u, float* __restrict out,
                                     int64_t n, float s, float inv, float z, float hi, float p, float a_hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float xi = activate<kAct>(x[i], a_hi), ui = u[i], c = round_even(xi * inv) + z;
    const float q = ((c < 0.0f ? 0.0f : (c > hi ? hi : c)) - z) * s;
    out[i] = ui < p ? xi : q;
  }
}

// The gradient w.r.t. x into gx, and the chunk's sum of the step's gradient terms (before grad_factor), summed in
// 16 lanes, so that the result does not depend on vector width or thread count. With the activation fused, x is its
// input and the gradient passes only where 0 < x < a_hi (torch's ReLU/ReLU6 backward: 0 where the input is at or
// beyond a bound).
template <bool kAct>
DSGQ_ALWAYS_INLINE double backward_body(const float* __restrict x, const float* __restrict u, const float* __restrict g,
                                        float* __restrict gx, float* __restrict terms, int64_t n, float inv, float z,
                                        float hi, float p, float a_hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float x0 = x[i], xi = activate<kAct>(x0, a_hi), gi = g[i], ui = u[i];
    const float kept = ui < p ? 0.0f : 1.0f;  // 0/1 factors (exact), not branches
    const float xs = xi * inv, r = round_even(xs), code = r + z;
    const float below = code < 0.0f ? 1.0f : 0.0f, above = code > hi ? 1.0f : 0.0f;
    const float term = below * -z + above * (hi - z) + (1.0f - below - above) * (r - xs);
    const float through = gi * (1.0f - kept * (below + above));
    gx[i] = kAct ? (x0 > 0.0f && x0 < a_hi ? through : 0.0f) : through;
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

DSGQ_ALWAYS_INLINE void mix_body(const float* __restrict q, const float* __restrict x, const float* __restrict u,
                                 float* __restrict out, int64_t n, float p) {
  for (int64_t i = 0; i < n; ++i) {
    const float qi = q[i], xi = x[i], ui = u[i];
    out[i] = ui < p ? xi : qi;
  }
}

// The loops above for the best ISA of this CPU (core/simd.hpp): the same bits in every variant.
DSGQ_SIMD_FUNCTION(void, forward_plain,
                   (const float* x, const float* u, float* out, int64_t n, float s, float inv, float z, float hi,
                    float p, float a_hi),
                   (x, u, out, n, s, inv, z, hi, p, a_hi), forward_body<false>)
DSGQ_SIMD_FUNCTION(void, forward_act,
                   (const float* x, const float* u, float* out, int64_t n, float s, float inv, float z, float hi,
                    float p, float a_hi),
                   (x, u, out, n, s, inv, z, hi, p, a_hi), forward_body<true>)
DSGQ_SIMD_FUNCTION(double, backward_plain,
                   (const float* x, const float* u, const float* g, float* gx, float* terms, int64_t n, float inv,
                    float z, float hi, float p, float a_hi),
                   (x, u, g, gx, terms, n, inv, z, hi, p, a_hi), backward_body<false>)
DSGQ_SIMD_FUNCTION(double, backward_act,
                   (const float* x, const float* u, const float* g, float* gx, float* terms, int64_t n, float inv,
                    float z, float hi, float p, float a_hi),
                   (x, u, g, gx, terms, n, inv, z, hi, p, a_hi), backward_body<true>)
DSGQ_SIMD_FUNCTION(void, mix_loop, (const float* q, const float* x, const float* u, float* out, int64_t n, float p),
                   (q, x, u, out, n, p), mix_body)

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
  // zp, qmax as doubles; drop in [0, 1); u empty when drop is 0 (autograd takes no undefined inputs); act_hi: the
  // fused activation's upper bound (+inf ReLU, 6 ReLU6), NaN for none.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& step,
                            const at::Tensor& u, double zp, double qmax, double grad_factor, double drop,
                            double act_hi) {
    const float s = step.item<float>(), inv = 1.0f / s, z = static_cast<float>(zp), hi = static_cast<float>(qmax);
    const float p = static_cast<float>(drop), a_hi = static_cast<float>(act_hi);
    const bool act = !std::isnan(act_hi);
    at::Tensor out = at::empty_like(x);
    const float* px = x.data_ptr<float>();
    const float* pu = u.numel() > 0 ? u.data_ptr<float>() : nullptr;
    float* po = out.data_ptr<float>();
    at::parallel_for(0, x.numel(), kChunk, [&](int64_t b, int64_t e) {
      const float* ub = (pu != nullptr ? pu : px) + b;
      const float pb = pu != nullptr ? p : -kInf;
      if (act)
        forward_act(px + b, ub, po + b, e - b, s, inv, z, hi, pb, a_hi);
      else
        forward_plain(px + b, ub, po + b, e - b, s, inv, z, hi, pb, a_hi);
    });
    ctx->save_for_backward({x, step, u});
    ctx->saved_data["zp"] = zp;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["gf"] = grad_factor;
    ctx->saved_data["drop"] = drop;
    ctx->saved_data["act_hi"] = act_hi;
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
    const double act_hi = ctx->saved_data["act_hi"].toDouble();
    const float a_hi = static_cast<float>(act_hi);
    const bool act = !std::isnan(act_hi);
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
        const float* ub = (pu != nullptr ? pu : px) + b;
        const float pb = pu != nullptr ? p : -kInf;
        partial[static_cast<size_t>(c)] =
            act ? backward_act(px + b, ub, pg + b, pgx + b, terms.data(), e - b, inv, z, hi, pb, a_hi)
                : backward_plain(px + b, ub, pg + b, pgx + b, terms.data(), e - b, inv, z, hi, pb, a_hi);
      }
    });
    double sum = 0;
    for (double v : partial) sum += v;
    at::Tensor gs = torch::full({1}, sum * ctx->saved_data["gf"].toDouble(), step.options());
    return {gx, gs, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Rows `rows` of a [N, ...] tensor as per-row pointers checks: CPU float32, both the same per-row layout as `like`.
bool rows_compatible(const at::Tensor& t, const at::Tensor& like) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == like.dim() && t.dim() >= 1 &&
         t.sizes().slice(1) == like.sizes().slice(1) && t.strides().slice(1) == like.strides().slice(1) &&
         (t.is_contiguous() || t.is_contiguous(at::MemoryFormat::ChannelsLast));
}

// The indices of `rows` as int64 on the CPU.
std::vector<int64_t> row_list(const at::Tensor& rows) {
  const at::Tensor r = rows.to(at::kCPU, at::kLong).contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

// d = a - t and the sum of d^2 (16 float64 lanes, then in order), one row of the squared error.
DSGQ_ALWAYS_INLINE double diff_sq_body(const float* __restrict a, const float* __restrict t, float* __restrict d,
                                       int64_t per) {
  constexpr int64_t kLanes = 16;
  double lanes[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= per; k += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) {
      const float v = a[k + l] - t[k + l];
      d[k + l] = v;
      lanes[l] += static_cast<double>(v) * static_cast<double>(v);
    }
  double sum = 0;
  for (; k < per; ++k) {
    const float v = a[k] - t[k];
    d[k] = v;
    sum += static_cast<double>(v) * v;
  }
  for (double v : lanes) sum += v;
  return sum;
}

// (d * 2) * g: torch's mse_loss backward (sum reduction) in its rounding order.
DSGQ_ALWAYS_INLINE void twice_times_body(const float* __restrict d, float* __restrict out, int64_t n, float g) {
  for (int64_t i = 0; i < n; ++i) out[i] = (d[i] * 2.0f) * g;
}

DSGQ_SIMD_FUNCTION(double, diff_sq_row, (const float* a, const float* t, float* d, int64_t per), (a, t, d, per),
                   diff_sq_body)
DSGQ_SIMD_FUNCTION(void, twice_times, (const float* d, float* out, int64_t n, float g), (d, out, n, g),
                   twice_times_body)

// sum((out - y[rows])^2) and its gradient: forward one pass (the difference kept, the sum in float64 per row, rows
// added in order), backward one pass: (2 (out - y)) * g, rounded as torch's mse_loss backward rounds it (difference,
// times 2, times the incoming gradient).
struct SqErrorSumFn : public torch::autograd::Function<SqErrorSumFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& out, const at::Tensor& y,
                            const at::Tensor& rows) {
    const std::vector<int64_t> r = row_list(rows);
    at::Tensor d = at::empty_like(out);
    const int64_t n = out.size(0), per = n > 0 ? out.numel() / n : 0;
    const float* po = out.data_ptr<float>();
    const float* py = y.data_ptr<float>();
    float* pd = d.data_ptr<float>();
    std::vector<double> row_sums(static_cast<size_t>(n), 0.0);
    at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        row_sums[static_cast<size_t>(i)] =
            diff_sq_row(po + i * per, py + r[static_cast<size_t>(i)] * per, pd + i * per, per);
    });
    double total = 0;
    for (double v : row_sums) total += v;
    ctx->save_for_backward({d});
    return torch::full({}, total, out.options());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor d = ctx->get_saved_variables()[0];
    const float g = grads[0].item<float>();
    at::Tensor gx = at::empty_like(d);
    const float* pd = d.data_ptr<float>();
    float* pg = gx.data_ptr<float>();
    at::parallel_for(0, d.numel(), kChunk, [&](int64_t b, int64_t e) { twice_times(pd + b, pg + b, e - b, g); });
    return {gx, at::Tensor(), at::Tensor()};
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

namespace {

constexpr double kNoActivation = std::numeric_limits<double>::quiet_NaN();

// The activation act_lsq_drop fuses, by torch's ops: ReLU (act_hi = +inf), ReLU6 (6), none (NaN).
at::Tensor activation_of(const at::Tensor& x, double act_hi) {
  if (std::isnan(act_hi)) return x;
  return std::isinf(act_hi) ? at::relu(x) : at::hardtanh(x, 0.0, act_hi);
}

// lsq_drop(activation_of(x, act_hi), ...): one fused pass each way for dense float32 CPU tensors; otherwise the
// activation by torch's ops, then the fused plain pass where it applies, else the composite.
at::Tensor act_lsq_drop_impl(const at::Tensor& x, double act_hi, const at::Tensor& step, int64_t zero_point, int bits,
                             double grad_factor, const at::Tensor& u, double drop) {
  const bool dense = x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast);
  const bool fused =
      x.device().is_cpu() && x.scalar_type() == at::kFloat && dense &&
      (drop <= 0 || drop >= 1 || (u.defined() && u.sizes() == x.sizes() && u.scalar_type() == at::kFloat));
  if (!fused && !std::isnan(act_hi)) {
    const at::Tensor a = activation_of(x, act_hi);
    return act_lsq_drop_impl(a.is_contiguous() || a.is_contiguous(at::MemoryFormat::ChannelsLast) ? a : a.contiguous(),
                             kNoActivation, step, zero_point, bits, grad_factor, u, drop);
  }
  if (!fused) return drop_mix(lsq_quantize(x, step, zero_point, bits, grad_factor), x, u, drop);
  if (drop >= 1) return activation_of(x, act_hi);
  const double qmax = std::pow(2.0, bits) - 1.0;
  return LsqDropFn::apply(x, step, drop > 0 ? like_layout(u, x) : at::empty({0}, x.options()),
                          static_cast<double>(zero_point), qmax, grad_factor, drop, act_hi);
}

}  // namespace

at::Tensor lsq_drop(const at::Tensor& x, const at::Tensor& step, int64_t zero_point, int bits, double grad_factor,
                    const at::Tensor& u, double drop) {
  return act_lsq_drop_impl(x, kNoActivation, step, zero_point, bits, grad_factor, u, drop);
}

at::Tensor act_lsq_drop(const at::Tensor& x, double act_hi, const at::Tensor& step, int64_t zero_point, int bits,
                        double grad_factor, const at::Tensor& u, double drop) {
  if (bits >= 32) return activation_of(x, act_hi);  // a site left in floating point
  return act_lsq_drop_impl(x, act_hi, step, zero_point, bits, grad_factor, u, drop);
}

at::Tensor gather_mix(const at::Tensor& q, const at::Tensor& x, const at::Tensor& rows, const at::Tensor& u,
                      double drop) {
  if (drop <= 0) return q.index_select(0, rows);
  if (drop >= 1) return x.index_select(0, rows);
  const int64_t n = rows.numel();
  const bool plain = !q.requires_grad() && !x.requires_grad() && q.size(0) > 0 && rows_compatible(x, q) &&
                     rows_compatible(q, q) && u.defined() && u.dim() == q.dim() && u.size(0) == n &&
                     u.sizes().slice(1) == q.sizes().slice(1) && u.scalar_type() == at::kFloat && u.device().is_cpu();
  if (!plain) return drop_mix(q.index_select(0, rows), x.index_select(0, rows), u, drop);
  const std::vector<int64_t> r = row_list(rows);
  std::vector<int64_t> shape(q.sizes().begin(), q.sizes().end());
  shape[0] = n;
  at::Tensor out = at::empty(shape, q.options().memory_format(q.suggest_memory_format()));
  const at::Tensor um = u.strides() == out.strides() ? u : u.contiguous(q.suggest_memory_format());
  const int64_t per = q.numel() / q.size(0);
  const float *pq = q.data_ptr<float>(), *px = x.data_ptr<float>(), *pu = um.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const float p = static_cast<float>(drop);
  at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t src = r[static_cast<size_t>(i)] * per;
      mix_loop(pq + src, px + src, pu + i * per, po + i * per, per, p);
    }
  });
  return out;
}

at::Tensor sq_error_sum(const at::Tensor& out, const at::Tensor& y, const at::Tensor& rows) {
  const at::Tensor ry = rows.defined() ? rows : at::arange(out.size(0), at::kLong);
  if (out.dim() >= 1 && rows_compatible(out, out) && rows_compatible(y, out) && ry.numel() == out.size(0) &&
      !y.requires_grad())
    return SqErrorSumFn::apply(out, y, ry);
  const at::Tensor t = rows.defined() ? y.index_select(0, rows.to(y.device())) : y;
  return at::mse_loss(out, t, at::Reduction::Sum);
}

uint64_t mix64(uint64_t z) { return mix64_body(z); }

void fill_uniform(float* out, int64_t n, uint64_t key) { fill_uniform_simd(out, n, key); }

}  // namespace dsgq::quant
