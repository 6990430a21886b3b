// src/config/sweep_config.cpp: sweep files expand to points.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/run_config.hpp"
#include "config/sweep_config.hpp"
#include "test_util.hpp"

// Sweep files: lists expand to the cartesian product (last key fastest), [[sweep.grid]] tables union their products,
// quant.bits sets both widths, and every point is validated like a run file.
TEST(SweepConfig, GridsExpandInOrderWithBitsShorthand) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  const auto s = dsgq::config::parse_sweep(R"(
[sweep]
name = "t"
[[sweep.grid]]
"quant.bits" = ["w8a8", "w4a8"]
[[sweep.grid]]
quant.bits = "w3a3"
"synth.seed" = [0, 1]
[model]
arch = "resnet20"
[synth]
method = ["dsg", "real"]
)",
                                           "s.toml", {"quant.protocol=adaround"});
  EXPECT_EQ(s.name, "t");
  ASSERT_EQ(s.points.size(), 8u);  // 2 bits x 2 methods, then 1 bits x 2 methods x 2 seeds
  EXPECT_EQ(s.points[0].label, "quant.bits=w8a8 synth.method=dsg");
  EXPECT_EQ(s.points[1].label, "quant.bits=w8a8 synth.method=real");
  EXPECT_EQ(s.points[2].cfg.quant.w_bits, 4);
  EXPECT_EQ(s.points[2].cfg.quant.a_bits, 8);
  EXPECT_EQ(s.points[4].label, "quant.bits=w3a3 synth.method=dsg synth.seed=0");
  EXPECT_EQ(s.points[7].cfg.synth.method, dsgq::config::SynthMethod::real);
  EXPECT_EQ(s.points[7].cfg.synth.seed, 1);
  EXPECT_EQ(s.points[7].cfg.quant.w_bits, 3);
  EXPECT_EQ(s.points[7].cfg.quant.act_observer,
            dsgq::config::Observer::mse);  // auto under the adaround protocol set on the command line
  EXPECT_EQ(s.axes, (std::vector<std::string>{"quant.bits", "synth.method", "synth.seed"}));
}

TEST(SweepConfig, RunFileWithoutListsIsOnePoint) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  const auto s = dsgq::config::parse_sweep("[quant]\nw_bits = 6\n", "s.toml", {});
  ASSERT_EQ(s.points.size(), 1u);
  EXPECT_EQ(s.points[0].cfg.quant.w_bits, 6);
  EXPECT_EQ(s.points[0].cfg.quant.act_observer, dsgq::config::Observer::ema);
  EXPECT_TRUE(s.axes.empty());
}
