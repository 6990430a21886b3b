#include "models/bn_kernels.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.hpp"

namespace dsgq::models {
namespace {

constexpr int64_t kLanes = 16;  // float lanes of the plane sums: vectorizable, the same result at any vector width

// One (image, channel) plane of hw floats: its sum, and its sum of squared deviations from its mean, m2, formed
// from the deviations from the plane's float mean (no cancellation) minus the exact correction hw (m_f - m)^2.
void plane_moments(const float* __restrict p, int64_t hw, double* sum, double* m2) {
  float lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= hw; i += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) lane[k] += p[i + k];
  double s = 0;
  for (; i < hw; ++i) s += p[i];
  for (float v : lane) s += v;
  const double n = static_cast<double>(hw), m = s / n;
  const float mf = static_cast<float>(m);
  float dev[kLanes] = {};
  for (i = 0; i + kLanes <= hw; i += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) {
      const float d = p[i + k] - mf;
      dev[k] += d * d;
    }
  double d2 = 0;
  for (; i < hw; ++i) {
    const double d = static_cast<double>(p[i]) - mf;
    d2 += d * d;
  }
  for (float v : dev) d2 += v;
  const double shift = static_cast<double>(mf) - m;
  *sum = s;
  *m2 = std::max(0.0, d2 - n * shift * shift);
}

// y = x * a + b over one plane, rounded as torch's CPU BatchNorm kernel rounds it where the CPU has FMA (one fused
// multiply-add: its AVX2/AVX-512 builds contract the expression), so that the fused BatchNorm gives torch's bytes.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void affine_plane_fma(const float* __restrict in, float* __restrict out, int64_t hw,
                                                          float a, float b) {
  for (int64_t i = 0; i < hw; ++i) out[i] = std::fma(in[i], a, b);
}
bool cpu_has_fma() {
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return v;
}
#else
void affine_plane_fma(const float*, float*, int64_t, float, float) {}
bool cpu_has_fma() { return false; }
#endif

void affine_plane(const float* __restrict in, float* __restrict out, int64_t hw, float a, float b) {
  if (cpu_has_fma()) return affine_plane_fma(in, out, hw, a, b);
  for (int64_t i = 0; i < hw; ++i) out[i] = in[i] * a + b;  // this file: no contraction (-ffp-contract=off)
}

// The sum of squares of a plane from its moments: m2 + sum^2 / hw (both terms non-negative).
inline double sum_of_squares(double sum, double m2, int64_t hw) { return m2 + sum * sum / static_cast<double>(hw); }

// The per-plane moments into [n, C] partials, then per channel summed over the images in order.
void reduce_planes(const std::vector<double>& ps, const std::vector<double>& pq, int64_t n, int64_t C, double* out) {
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, q = 0;
    for (int64_t i = 0; i < n; ++i) {
      s += ps[static_cast<size_t>(i * C + c)];
      q += pq[static_cast<size_t>(i * C + c)];
    }
    out[c] = s;
    out[C + c] = q;
  }
}

bool fast_path(const at::Tensor& x) {
  return x.is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 4 && x.is_contiguous() && x.numel() > 0;
}

// The gradient of channel_sums (and, with gy, of the fused BatchNorm y = x * alpha + beta): g_sum + 2 g_sq x, formed
// per plane as (g_sum + 2 g_sq m) + 2 g_sq (x - m) around the plane's float mean m, the constant part in float64:
// the two terms nearly cancel when |mean| >> std, which float32 alone would not resolve. m depends on the image
// only, so the gradient does not depend on how the batch is split over ranks.
at::Tensor sums_backward(const at::Tensor& x, const at::Tensor& gy, const at::Tensor& alpha, const at::Tensor& g_sums,
                         const at::Tensor& plane_means) {
  const int64_t n = x.size(0), C = x.size(1), hw = x.size(2) * x.size(3);
  const at::Tensor g = g_sums.defined() ? g_sums.to(at::kCPU, at::kDouble).contiguous()
                                        : at::zeros({2 * C}, plane_means.options().dtype(at::kDouble));
  const double* pg = g.data_ptr<double>();
  const float* pm = plane_means.data_ptr<float>();
  at::Tensor gx = at::empty_like(x);
  const float* px = x.data_ptr<float>();
  const float* pgy = gy.defined() ? gy.data_ptr<float>() : nullptr;
  const float* pa = alpha.defined() ? alpha.data_ptr<float>() : nullptr;
  float* pgx = gx.data_ptr<float>();
  at::parallel_for(0, n * C, 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const int64_t c = j % C;
      const float m = pm[j];
      const float k0 = static_cast<float>(pg[c] + 2.0 * pg[C + c] * static_cast<double>(m));
      const float k1 = static_cast<float>(2.0 * pg[C + c]);
      const float* __restrict in = px + j * hw;
      float* __restrict out = pgx + j * hw;
      if (pgy != nullptr) {
        const float a = pa[c];
        const float* __restrict gyj = pgy + j * hw;
        for (int64_t i = 0; i < hw; ++i) out[i] = gyj[i] * a + (k0 + k1 * (in[i] - m));
      } else {
        for (int64_t i = 0; i < hw; ++i) out[i] = k0 + k1 * (in[i] - m);
      }
    }
  });
  return gx;
}

// The float means of the planes, from their sums.
at::Tensor plane_means(const std::vector<double>& ps, int64_t n, int64_t C, int64_t hw) {
  at::Tensor m = at::empty({n * C}, at::TensorOptions().dtype(at::kFloat));
  float* pm = m.data_ptr<float>();
  for (size_t j = 0; j < ps.size(); ++j) pm[j] = static_cast<float>(ps[j] / static_cast<double>(hw));
  return m;
}

struct ChannelSumsFn : public torch::autograd::Function<ChannelSumsFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& f) {
    const int64_t n = f.size(0), C = f.size(1), hw = f.size(2) * f.size(3);
    std::vector<double> ps(static_cast<size_t>(n * C)), pq(ps.size());
    const float* pf = f.data_ptr<float>();
    at::parallel_for(0, n * C, 1, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        double m2;
        plane_moments(pf + j * hw, hw, &ps[static_cast<size_t>(j)], &m2);
        pq[static_cast<size_t>(j)] = sum_of_squares(ps[static_cast<size_t>(j)], m2, hw);
      }
    });
    at::Tensor out = at::empty({2 * C}, f.options().dtype(at::kDouble));
    reduce_planes(ps, pq, n, C, out.data_ptr<double>());
    ctx->save_for_backward({f});
    ctx->saved_data["means"] = plane_means(ps, n, C, hw);
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor f = ctx->get_saved_variables()[0];
    return {sums_backward(f, at::Tensor(), at::Tensor(), grads[0], ctx->saved_data["means"].toTensor())};
  }
};

// y = x * alpha + beta and channel_sums(x); alpha, beta float [C].
struct BnSumsFn : public torch::autograd::Function<BnSumsFn> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const at::Tensor& alpha, const at::Tensor& beta) {
    const int64_t n = x.size(0), C = x.size(1), hw = x.size(2) * x.size(3);
    at::Tensor y = at::empty_like(x);
    std::vector<double> ps(static_cast<size_t>(n * C)), pq(ps.size());
    const float *px = x.data_ptr<float>(), *pa = alpha.data_ptr<float>(), *pb = beta.data_ptr<float>();
    float* py = y.data_ptr<float>();
    at::parallel_for(0, n * C, 1, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        const float a = pa[j % C], s = pb[j % C];
        const float* __restrict in = px + j * hw;
        float* __restrict out = py + j * hw;
        affine_plane(in, out, hw, a, s);
        double m2;
        plane_moments(in, hw, &ps[static_cast<size_t>(j)], &m2);
        pq[static_cast<size_t>(j)] = sum_of_squares(ps[static_cast<size_t>(j)], m2, hw);
      }
    });
    at::Tensor sums = at::empty({2 * C}, x.options().dtype(at::kDouble));
    reduce_planes(ps, pq, n, C, sums.data_ptr<double>());
    ctx->save_for_backward({x, alpha});
    ctx->saved_data["means"] = plane_means(ps, n, C, hw);
    return {y, sums};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor gy = grads[0].defined() ? grads[0].contiguous() : at::Tensor();
    return {sums_backward(saved[0], gy, saved[1], grads[1], ctx->saved_data["means"].toTensor()), at::Tensor(),
            at::Tensor()};
  }
};

// y = x * alpha + beta and the per-plane mean and unbiased variance of x.
struct BnMomentsFn : public torch::autograd::Function<BnMomentsFn> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const at::Tensor& alpha, const at::Tensor& beta) {
    const int64_t n = x.size(0), C = x.size(1), hw = x.size(2) * x.size(3);
    at::Tensor y = at::empty_like(x), mean = at::empty({n, C}, x.options()), var = at::empty({n, C}, x.options());
    const float *px = x.data_ptr<float>(), *pa = alpha.data_ptr<float>(), *pb = beta.data_ptr<float>();
    float *py = y.data_ptr<float>(), *pm = mean.data_ptr<float>(), *pv = var.data_ptr<float>();
    at::parallel_for(0, n * C, 1, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        const float a = pa[j % C], s = pb[j % C];
        const float* __restrict in = px + j * hw;
        float* __restrict out = py + j * hw;
        affine_plane(in, out, hw, a, s);
        double sum, m2;
        plane_moments(in, hw, &sum, &m2);
        pm[j] = static_cast<float>(sum / static_cast<double>(hw));
        pv[j] = static_cast<float>(m2 / static_cast<double>(hw - 1));
      }
    });
    ctx->save_for_backward({x, alpha, mean});
    return {y, mean, var};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &alpha = saved[1], &mean = saved[2];
    const int64_t n = x.size(0), C = x.size(1), hw = x.size(2) * x.size(3);
    const at::Tensor gy = grads[0].defined() ? grads[0].contiguous() : at::Tensor();
    const at::Tensor gm = grads[1].defined() ? grads[1].contiguous() : at::zeros({n, C}, x.options());
    const at::Tensor gv = grads[2].defined() ? grads[2].contiguous() : at::zeros({n, C}, x.options());
    at::Tensor gx = at::empty_like(x);
    const float *px = x.data_ptr<float>(), *pa = alpha.data_ptr<float>(), *pmean = mean.data_ptr<float>();
    const float *pgm = gm.data_ptr<float>(), *pgv = gv.data_ptr<float>();
    const float* pgy = gy.defined() ? gy.data_ptr<float>() : nullptr;
    float* pgx = gx.data_ptr<float>();
    const float inv_hw = 1.0f / static_cast<float>(hw), two_over = 2.0f / static_cast<float>(hw - 1);
    at::parallel_for(0, n * C, 1, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        const float a = pgy != nullptr ? pa[j % C] : 0.0f, m = pmean[j];
        const float c0 = pgm[j] * inv_hw, c1 = pgv[j] * two_over;
        const float* __restrict in = px + j * hw;
        float* __restrict out = pgx + j * hw;
        if (pgy != nullptr) {
          const float* __restrict gyj = pgy + j * hw;
          for (int64_t i = 0; i < hw; ++i) out[i] = gyj[i] * a + (c0 + c1 * (in[i] - m));
        } else {
          for (int64_t i = 0; i < hw; ++i) out[i] = c0 + c1 * (in[i] - m);
        }
      }
    });
    return {gx, at::Tensor(), at::Tensor()};
  }
};

// alpha and beta of inference BatchNorm, float32 [C], as torch's CPU kernel forms them; undefined when the
// parameters are learned (the fused passes have no gradient for them).
std::pair<at::Tensor, at::Tensor> bn_affine(const at::Tensor& weight, const at::Tensor& bias,
                                            const at::Tensor& running_mean, const at::Tensor& running_var, double eps) {
  if (weight.requires_grad() || bias.requires_grad() || running_mean.requires_grad() || running_var.requires_grad())
    return {};
  // torch's CPU kernel: invstd = 1 / sqrt(var + eps) in float, alpha = invstd * weight, beta = bias - mean * alpha
  // with one rounding (a fused multiply-add, as its vectorized builds compile it)
  const at::Tensor w = weight.detach().to(at::kCPU, at::kFloat).contiguous(),
                   b = bias.detach().to(at::kCPU, at::kFloat).contiguous(),
                   m = running_mean.detach().to(at::kCPU, at::kFloat).contiguous(),
                   v = running_var.detach().to(at::kCPU, at::kFloat).contiguous();
  const int64_t C = w.numel();
  at::Tensor alpha = at::empty({C}, w.options()), beta = at::empty({C}, w.options());
  const float *pw = w.data_ptr<float>(), *pb = b.data_ptr<float>(), *pm = m.data_ptr<float>(),
              *pv = v.data_ptr<float>();
  float *pa = alpha.data_ptr<float>(), *pbe = beta.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    const float invstd = 1.0f / std::sqrt(pv[c] + static_cast<float>(eps));
    pa[c] = invstd * pw[c];
    pbe[c] = std::fma(-pm[c], pa[c], pb[c]);
  }
  return {alpha, beta};
}

}  // namespace

at::Tensor channel_sums(const at::Tensor& f) {
  DSGQ_CHECK(f.dim() == 4, "channel_sums: need [n,C,H,W]");
  if (fast_path(f)) return ChannelSumsFn::apply(f);
  const at::Tensor fd = f.to(at::kDouble);
  return torch::cat({fd.sum({0, 2, 3}), fd.square().sum({0, 2, 3})});
}

std::pair<at::Tensor, at::Tensor> bn_eval_with_sums(const at::Tensor& x, const at::Tensor& weight,
                                                    const at::Tensor& bias, const at::Tensor& running_mean,
                                                    const at::Tensor& running_var, double eps) {
  const auto [alpha, beta] = bn_affine(weight, bias, running_mean, running_var, eps);
  if (!fast_path(x) || !alpha.defined())
    return {at::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/false, 0.1, eps, true),
            channel_sums(x)};
  const auto out = BnSumsFn::apply(x, alpha, beta);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_eval_with_moments(const at::Tensor& x, const at::Tensor& weight,
                                                                    const at::Tensor& bias,
                                                                    const at::Tensor& running_mean,
                                                                    const at::Tensor& running_var, double eps) {
  DSGQ_CHECK(x.dim() == 4 && x.size(2) * x.size(3) >= 2, "bn_eval_with_moments: need [n,C,H,W] with H*W >= 2");
  const auto [alpha, beta] = bn_affine(weight, bias, running_mean, running_var, eps);
  if (!fast_path(x) || !alpha.defined()) {
    auto [var, mean] = at::var_mean(x, {2, 3}, /*unbiased=*/true);
    return {at::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/false, 0.1, eps, true), mean, var};
  }
  const auto out = BnMomentsFn::apply(x, alpha, beta);
  return {out[0], out[1], out[2]};
}

}  // namespace dsgq::models
