#include "eval/evaluate.hpp"

#include <torch/torch.h>

#include "core/timer.hpp"

namespace dsgq::eval {

Counts count_correct(const models::Network& net, const at::Tensor& pixels, const at::Tensor& labels, int64_t batch,
                     int64_t global_total, const models::ForwardHooks* hooks) {
  torch::NoGradGuard no_grad;
  Counts c;
  const int64_t n = pixels.size(0);
  const int64_t k = std::min<int64_t>(5, net.input().num_classes);
  Progress progress("eval " + net.arch(), "images", global_total);
  for (int64_t b = 0; b < n; b += batch) {
    const int64_t e = std::min(n, b + batch);
    const at::Tensor x = net.normalize(pixels.slice(0, b, e), net.device());
    const at::Tensor y = labels.slice(0, b, e).to(net.device());
    const at::Tensor logits = net.forward(x, hooks);
    const at::Tensor topk = std::get<1>(logits.topk(k, 1, true, true));  // [m, k]
    const at::Tensor hit = topk.eq(y.unsqueeze(1));
    c.top1 += hit.select(1, 0).sum().item<int64_t>();
    c.top5 += hit.any(1).sum().item<int64_t>();
    c.n += e - b;
    progress.update(n > 0 ? c.n * global_total / n : 0);
  }
  return c;
}

Counts allreduce(const Counts& local, const mpi::Comm& comm) {
  std::vector<int64_t> v = {local.n, local.top1, local.top5};
  comm.allreduce_sum(v);
  return {v[0], v[1], v[2]};
}

}  // namespace dsgq::eval
