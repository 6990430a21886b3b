#include "quant/gemm.hpp"

#include <torch/torch.h>

#include <string>

#include "core/error.hpp"

#ifdef DSGQ_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace dsgq::quant {

at::Tensor mm_nt(const at::Tensor& a, const at::Tensor& b) {
  DSGQ_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1),
             "mm_nt: expected a [m, k] and b [n, k], got " + std::to_string(a.dim()) + "-D and " +
                 std::to_string(b.dim()) + "-D with k " + std::to_string(a.size(-1)) + " and " +
                 std::to_string(b.size(-1)));
#ifdef DSGQ_HAVE_DNNL
  if (a.device().is_cpu() && b.device().is_cpu() && a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat &&
      !a.requires_grad() && !b.requires_grad() && a.numel() > 0 && b.numel() > 0) {
    // oneDNN's sgemm is row-major: C[m, n] = A[m, k] B^T with B stored [n, k] ('T'); rows must be unit-stride.
    const at::Tensor ac = a.stride(1) == 1 ? a : a.contiguous(), bc = b.stride(1) == 1 ? b : b.contiguous();
    at::Tensor c = at::empty({a.size(0), b.size(0)}, a.options());
    const dnnl_status_t st =
        dnnl_sgemm('N', 'T', a.size(0), b.size(0), a.size(1), 1.0f, ac.data_ptr<float>(), ac.stride(0),
                   bc.data_ptr<float>(), bc.stride(0), 0.0f, c.data_ptr<float>(), c.size(1));
    DSGQ_CHECK(st == dnnl_success, "oneDNN sgemm failed with status " + std::to_string(static_cast<int>(st)));
    return c;
  }
#endif
  return at::mm(a, b.t());
}

}  // namespace dsgq::quant
