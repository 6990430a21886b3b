// src/synth/plateau.cpp: ReduceLROnPlateau with PyTorch's semantics.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "synth/plateau.hpp"

using namespace dsgq::synth;

TEST(Plateau, FollowsPyTorchReduceLROnPlateau) {
  PlateauConfig pc;
  pc.patience = 2;
  Plateau p(0.5, pc);
  // best 5, then 4 (improves), then three equal values: the third non-improvement (> patience 2) reduces.
  EXPECT_EQ(p.step(5), 0.5);
  EXPECT_EQ(p.step(4), 0.5);
  EXPECT_EQ(p.step(4), 0.5);
  EXPECT_EQ(p.step(4), 0.5);
  EXPECT_DOUBLE_EQ(p.step(4), 0.05);
  // A relative improvement below the threshold (1e-4) does not count.
  EXPECT_DOUBLE_EQ(p.step(3.9999), 0.05);
  EXPECT_DOUBLE_EQ(p.step(3.9999), 0.05);
  EXPECT_DOUBLE_EQ(p.step(3.9999), 0.005);
  // A real improvement resets the counter.
  EXPECT_DOUBLE_EQ(p.step(1.0), 0.005);
  EXPECT_EQ(p.bad_steps(), 0);
  // Never below min_lr (1e-4); reductions smaller than eps are skipped.
  for (int i = 0; i < 20; ++i) p.step(1.0);
  EXPECT_DOUBLE_EQ(p.lr(), 1e-4);
}

TEST(ConvergenceStop, EndsWhenTheBestLossStallsOverTheWindow) {
  // The best loss must gain, over 3 iterations, at least 1 % of what it gained since the first iteration.
  ConvergenceStop stop(0.01, 3);
  EXPECT_FALSE(stop.update(100));
  EXPECT_FALSE(stop.update(50));
  EXPECT_FALSE(stop.update(25));
  EXPECT_FALSE(stop.update(12.5));   // gained 87.5 over the window (of 87.5 in all)
  EXPECT_FALSE(stop.update(20));     // 37.5 (best 12.5 against 50; a worse iterate does not count)
  EXPECT_FALSE(stop.update(12.49));  // 12.51 of 87.51
  EXPECT_TRUE(stop.update(12.48));   // 0.02 (against 12.5) < 1 % of 87.52
}

TEST(ConvergenceStop, ZeroLossEndsAtOnceAndRtolZeroNever) {
  ConvergenceStop hinge(0.001, 100);
  EXPECT_FALSE(hinge.update(3.0));
  EXPECT_TRUE(hinge.update(0.0));  // an empty active set: nothing left to optimise
  ConvergenceStop off(0.0, 1);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(off.update(1.0));
  EXPECT_FALSE(off.update(0.0));
}

TEST(PadLossCurve, FillsTheIterationsNotRunWithNan) {
  std::vector<float> c{3.f, 2.f};
  pad_loss_curve(c, 5);
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(c[1], 2.f);
  EXPECT_TRUE(std::isnan(c[2]) && std::isnan(c[4]));
  pad_loss_curve(c, 5);
  EXPECT_EQ(c.size(), 5u);
}
