// src/synth/plateau.cpp: ReduceLROnPlateau with PyTorch's semantics.
#include <gtest/gtest.h>

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
