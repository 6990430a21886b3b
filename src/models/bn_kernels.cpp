#include "models/bn_kernels.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
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

// One pass over the planes of x [n, C, H, W]: with y, y = x * alpha + beta (alpha, beta float [C]); per plane j
// (= image * C + channel) the moments of x, handed to on_plane(j, sum, m2). Threads take plane ranges.
template <class OnPlane>
void forward_planes(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& beta, at::Tensor* y,
                    OnPlane on_plane) {
  const int64_t n = x.size(0), C = x.size(1), hw = x.size(2) * x.size(3);
  const float* px = x.data_ptr<float>();
  const float* pa = y != nullptr ? alpha.data_ptr<float>() : nullptr;
  const float* pb = y != nullptr ? beta.data_ptr<float>() : nullptr;
  float* py = y != nullptr ? y->data_ptr<float>() : nullptr;
  at::parallel_for(0, n * C, 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      if (py != nullptr) affine_plane(px + j * hw, py + j * hw, hw, pa[j % C], pb[j % C]);
      double sum, m2;
      plane_moments(px + j * hw, hw, &sum, &m2);
      on_plane(j, sum, m2);
    }
  });
}

// channel_sums' forward: the sums [2C] (float64) and the planes' float means (what the backward centres on).
std::pair<at::Tensor, at::Tensor> sums_forward(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& beta,
                                               at::Tensor* y) {
  const int64_t n = x.size(0), C = x.size(1), hw = x.size(2) * x.size(3);
  std::vector<double> ps(static_cast<size_t>(n * C)), pq(ps.size());
  forward_planes(x, alpha, beta, y, [&](int64_t j, double sum, double m2) {
    ps[static_cast<size_t>(j)] = sum;
    pq[static_cast<size_t>(j)] = sum_of_squares(sum, m2, hw);
  });
  at::Tensor sums = at::empty({2 * C}, x.options().dtype(at::kDouble));
  reduce_planes(ps, pq, n, C, sums.data_ptr<double>());
  at::Tensor means = at::empty({n * C}, x.options());
  float* pm = means.data_ptr<float>();
  for (size_t j = 0; j < ps.size(); ++j) pm[j] = static_cast<float>(ps[j] / static_cast<double>(hw));
  return {sums, means};
}

// The backward pass of every fused function: per plane j, dx = dy * alpha + k0[j] + k1[j] (x - m[j]) (without dy when
// it is undefined): the statistics' gradient written around the plane's mean m, which keeps it exact in float32.
at::Tensor backward_planes(const at::Tensor& x, const at::Tensor& gy, const at::Tensor& alpha,
                           const std::vector<float>& k0, const std::vector<float>& k1, const float* m) {
  const int64_t n = x.size(0), C = x.size(1), hw = x.size(2) * x.size(3);
  at::Tensor gx = at::empty_like(x);
  const float* px = x.data_ptr<float>();
  const float* pgy = gy.defined() ? gy.data_ptr<float>() : nullptr;
  const float* pa = gy.defined() ? alpha.data_ptr<float>() : nullptr;
  float* pgx = gx.data_ptr<float>();
  at::parallel_for(0, n * C, 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const auto k = static_cast<size_t>(j);
      const float c0 = k0[k], c1 = k1[k], mj = m[j];
      const float* __restrict in = px + j * hw;
      float* __restrict out = pgx + j * hw;
      if (pgy != nullptr) {
        const float a = pa[j % C];
        const float* __restrict gyj = pgy + j * hw;
        for (int64_t i = 0; i < hw; ++i) out[i] = gyj[i] * a + (c0 + c1 * (in[i] - mj));
      } else {
        for (int64_t i = 0; i < hw; ++i) out[i] = c0 + c1 * (in[i] - mj);
      }
    }
  });
  return gx;
}

// The gradient of channel_sums (and, with gy, of the fused BatchNorm y = x * alpha + beta): g_sum + 2 g_sq x, formed
// per plane as (g_sum + 2 g_sq m) + 2 g_sq (x - m) around the plane's float mean m, the constant part in float64:
// the two terms nearly cancel when |mean| >> std, which float32 alone would not resolve. m depends on the image
// only, so the gradient does not depend on how the batch is split over ranks.
at::Tensor sums_backward(const at::Tensor& x, const at::Tensor& gy, const at::Tensor& alpha, const at::Tensor& g_sums,
                         const at::Tensor& plane_means) {
  const int64_t nC = x.size(0) * x.size(1), C = x.size(1);
  const at::Tensor g = g_sums.defined() ? g_sums.to(at::kCPU, at::kDouble).contiguous()
                                        : at::zeros({2 * C}, plane_means.options().dtype(at::kDouble));
  const double* pg = g.data_ptr<double>();
  const float* pm = plane_means.data_ptr<float>();
  std::vector<float> k0(static_cast<size_t>(nC)), k1(k0.size());
  for (int64_t j = 0; j < nC; ++j) {
    const int64_t c = j % C;
    k0[static_cast<size_t>(j)] = static_cast<float>(pg[c] + 2.0 * pg[C + c] * static_cast<double>(pm[j]));
    k1[static_cast<size_t>(j)] = static_cast<float>(2.0 * pg[C + c]);
  }
  return backward_planes(x, gy, alpha, k0, k1, pm);
}

struct ChannelSumsFn : public torch::autograd::Function<ChannelSumsFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& f) {
    auto [sums, means] = sums_forward(f, at::Tensor(), at::Tensor(), nullptr);
    ctx->save_for_backward({f});
    ctx->saved_data["means"] = means;
    return sums;
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
    at::Tensor y = at::empty_like(x);
    auto [sums, means] = sums_forward(x, alpha, beta, &y);
    ctx->save_for_backward({x, alpha});
    ctx->saved_data["means"] = means;
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
    float *pm = mean.data_ptr<float>(), *pv = var.data_ptr<float>();
    forward_planes(x, alpha, beta, &y, [&](int64_t j, double sum, double m2) {
      pm[j] = static_cast<float>(sum / static_cast<double>(hw));
      pv[j] = static_cast<float>(m2 / static_cast<double>(hw - 1));
    });
    ctx->save_for_backward({x, alpha, mean});
    return {y, mean, var};
  }
  // d x = d y * alpha + d mean / HW + 2 d var (x - mean) / (HW - 1)
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &alpha = saved[1], &mean = saved[2];
    const int64_t nC = x.size(0) * x.size(1), hw = x.size(2) * x.size(3);
    const at::Tensor gy = grads[0].defined() ? grads[0].contiguous() : at::Tensor();
    const at::Tensor gm = grads[1].defined() ? grads[1].contiguous() : at::zeros_like(mean);
    const at::Tensor gv = grads[2].defined() ? grads[2].contiguous() : at::zeros_like(mean);
    const float *pgm = gm.data_ptr<float>(), *pgv = gv.data_ptr<float>();
    const float inv_hw = 1.0f / static_cast<float>(hw), two_over = 2.0f / static_cast<float>(hw - 1);
    std::vector<float> k0(static_cast<size_t>(nC)), k1(k0.size());
    for (int64_t j = 0; j < nC; ++j) {
      k0[static_cast<size_t>(j)] = pgm[j] * inv_hw;
      k1[static_cast<size_t>(j)] = pgv[j] * two_over;
    }
    return {backward_planes(x, gy, alpha, k0, k1, mean.data_ptr<float>()), at::Tensor(), at::Tensor()};
  }
};

// Whether the fused passes apply: a contiguous float32 CPU input and BN parameters without gradient (the fused
// passes give none for them).
bool fused(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& running_mean,
           const at::Tensor& running_var) {
  return fast_path(x) && !weight.requires_grad() && !bias.requires_grad() && !running_mean.requires_grad() &&
         !running_var.requires_grad();
}

// alpha and beta of inference BatchNorm, float32 [C], as torch's CPU kernel forms them.
std::pair<at::Tensor, at::Tensor> bn_affine(const at::Tensor& weight, const at::Tensor& bias,
                                            const at::Tensor& running_mean, const at::Tensor& running_var, double eps) {
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
  if (!fused(x, weight, bias, running_mean, running_var))
    return {at::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/false, 0.1, eps, true),
            channel_sums(x)};
  const auto [alpha, beta] = bn_affine(weight, bias, running_mean, running_var, eps);
  const auto out = BnSumsFn::apply(x, alpha, beta);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_eval_with_moments(const at::Tensor& x, const at::Tensor& weight,
                                                                    const at::Tensor& bias,
                                                                    const at::Tensor& running_mean,
                                                                    const at::Tensor& running_var, double eps) {
  DSGQ_CHECK(x.dim() == 4 && x.size(2) * x.size(3) >= 2, "bn_eval_with_moments: need [n,C,H,W] with H*W >= 2");
  if (!fused(x, weight, bias, running_mean, running_var)) {
    auto [var, mean] = at::var_mean(x, {2, 3}, /*unbiased=*/true);
    return {at::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/false, 0.1, eps, true), mean, var};
  }
  const auto [alpha, beta] = bn_affine(weight, bias, running_mean, running_var, eps);
  const auto out = BnMomentsFn::apply(x, alpha, beta);
  return {out[0], out[1], out[2]};
}

int kernel_threads(int64_t work) {
  std::atomic<uint64_t> seen{0};
  at::parallel_for(0, work, 1, [&](int64_t, int64_t) { seen |= uint64_t(1) << (at::get_thread_num() % 64); });
  return __builtin_popcountll(seen.load());
}

}  // namespace dsgq::models
