// src/quant/quantizer.cpp: the released code's fake quantizer and the affine one against its double reference;
// src/quant/gemm.cpp against a float64 product.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <utility>
#include <vector>

#include "quant/gemm.hpp"
#include "quant/quantizer.hpp"

using namespace dsgq::quant;

namespace {
// fake_quant_affine (float32) vs its float64 reference, which rounds x * inv_scale in float like torch: only the
// float32 product (q - z) * scale differs, half an ulp of |x^| <= max|w| ~ 12, i.e. ~5e-7.
constexpr double kAffineTol = 1e-6;
}  // namespace

TEST(FakeQuant, OfficialQuantizerByHand) {
  // bits 2, range [0, 3]: s = 1, z = 2, q = clamp(round(x - 2), -2, 1), x^ = q + 2; round half to even.
  const at::Tensor x = torch::tensor({0.0f, 1.4f, 2.5f, 3.7f, -1.0f, 1.5f});
  const at::Tensor y = fake_quant_official(x, torch::tensor(0.0f), torch::tensor(3.0f), 2, 0);
  const at::Tensor expected = torch::tensor({0.0f, 1.0f, 2.0f, 3.0f, 0.0f, 2.0f});
  EXPECT_TRUE(torch::equal(y, expected)) << y;
}

TEST(FakeQuant, OfficialPerChannelUsesEachChannelsRange) {
  torch::manual_seed(3);
  const at::Tensor w = torch::randn({13, 7, 3, 3});
  auto [mn, mx] = channel_minmax(w);
  for (int bits : {2, 4, 8}) {
    const at::Tensor q = fake_quant_official(w, mn, mx, bits, 0);
    for (int64_t c = 0; c < 13; c += 4) {
      const at::Tensor one = fake_quant_official(w[c], mn[c], mx[c], bits, 0);
      EXPECT_TRUE(torch::equal(q[c], one)) << "bits " << bits << " channel " << c;
    }
    // At most 2^bits distinct levels per channel, and the error is at most half a step (plus rounding of z).
    EXPECT_LE(std::get<0>(at::_unique(q[0].reshape({-1}))).numel(), 1 << bits);
    const double step = ((mx - mn) / ((1 << bits) - 1)).max().item<double>();
    EXPECT_TRUE(!((q - w).abs().max().item<double>() > step)) << "bits " << bits;
  }
}

TEST(FakeQuant, AffineMatchesReference) {
  torch::manual_seed(5);
  const at::Tensor w = torch::randn({13, 7, 3, 3}) * 3;
  for (int bits : {2, 4, 8}) {
    const int64_t qmax = (1 << bits) - 1;
    const at::Tensor scale = torch::rand({13}) * 0.2 + 0.01, zp = torch::randint(0, qmax + 1, {13}).to(torch::kFloat);
    const double err = (fake_quant_affine(w, scale, zp, 0, qmax, 0).to(torch::kDouble) -
                        fake_quant_affine_ref(w, scale, zp, 0, qmax, 0))
                           .abs()
                           .max()
                           .item<double>();
    EXPECT_TRUE(!(err > kAffineTol)) << "per-channel bits " << bits << " err " << err;
    const at::Tensor s1 = torch::tensor({0.07f}), z1 = torch::tensor({3.0f});
    const double err1 =
        (fake_quant_affine(w, s1, z1, 0, qmax, 0).to(torch::kDouble) - fake_quant_affine_ref(w, s1, z1, 0, qmax, 0))
            .abs()
            .max()
            .item<double>();
    EXPECT_TRUE(!(err1 > kAffineTol)) << "per-tensor bits " << bits << " err " << err1;
  }
}

// quant::mm_nt (oneDNN's sgemm for CPU float32 where the build has its header, else at::mm) against a float64
// product: contiguous, strided (transposed views and column slices), one row, no rows, and float64 input.
TEST(Gemm, MatchesAFloat64ProductForEveryLayout) {
  torch::manual_seed(7);
  const at::Tensor a = torch::randn({37, 150}), b = torch::randn({19, 150});
  const at::Tensor at_ = torch::randn({150, 37}).t(), bt = torch::randn({150, 19}).t();  // rows not unit-stride
  const at::Tensor wide = torch::randn({37, 300});
  const std::vector<std::pair<at::Tensor, at::Tensor>> cases = {
      {a, b}, {at_, bt}, {wide.slice(1, 100, 250), b}, {a.slice(0, 5, 6), b}, {a.slice(0, 0, 0), b}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& [x, y] = cases[i];
    const at::Tensor got = dsgq::quant::mm_nt(x, y);
    const at::Tensor ref = at::mm(x.to(at::kDouble), y.to(at::kDouble).t());
    ASSERT_EQ(got.sizes(), ref.sizes()) << "case " << i;
    EXPECT_EQ(got.scalar_type(), at::kFloat) << "case " << i;
    if (ref.numel() == 0) continue;
    const double err = (got.to(at::kDouble) - ref).abs().max().item<double>() / ref.abs().max().item<double>();
    EXPECT_LT(err, 1e-5) << "case " << i;
  }
  const at::Tensor d = dsgq::quant::mm_nt(a.to(at::kDouble), b.to(at::kDouble));  // at::mm's path
  EXPECT_EQ(d.scalar_type(), at::kDouble);
  EXPECT_TRUE(d.allclose(at::mm(a.to(at::kDouble), b.to(at::kDouble).t())));
}
