#pragma once
// Matrix products for the reconstruction's closed forms (quant/adaround.hpp LayerGram). Debian's LibTorch sends
// at::mm on CPUs to the reference BLAS (BLAS_INFO=generic: libblas.so.3), ~7 GFLOP/s on one core here, while the
// oneDNN library it already links for its convolutions has an sgemm at 150-190 GFLOP/s (bench/reconstruct): with
// DSGQ_HAVE_DNNL (CMake found oneDNN's header, Debian's libdnnl-dev) CPU float32 products go there; every other
// tensor (CUDA, other dtypes, builds without oneDNN's header) takes at::mm.
#include <ATen/core/Tensor.h>

namespace dsgq::quant {

// a [m, k] times b [n, k] transposed: [m, n], a's dtype and device.
at::Tensor mm_nt(const at::Tensor& a, const at::Tensor& b);

}  // namespace dsgq::quant
