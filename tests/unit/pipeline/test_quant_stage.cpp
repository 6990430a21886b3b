// src/pipeline/quant_stage.cpp: how dsgq report names a point's row (report_labels, stored in every quantize record).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/run_config.hpp"
#include "pipeline/quant_stage.hpp"

using dsgq::config::parse_run_config;
using dsgq::pipeline::report_labels;

namespace {
std::string data_label(const std::string& synth, const std::vector<std::string>& sets = {}) {
  return report_labels(parse_run_config("[synth]\n" + synth + "\n[quant]\nprotocol = \"qdrop\"\n", "t.toml", sets))
      .data;
}
}  // namespace

// Sets made with other settings are other sets: each setting added after the first sets gets its own note where it
// differs from its default, so the rows of docs/campaigns.md section 4 (ce_weight 10 and 30, jitter + flip, crop +
// flip) stay apart in dsgq report instead of being averaged into one "deepinversion (dsgq, ...)" row.
TEST(ReportLabels, NameEverySynthSettingThatDiffersFromItsDefault) {
  const std::string di = "method = \"deepinversion\"\npreset = \"dsgq\"\n";
  EXPECT_EQ(data_label(di), "deepinversion (dsgq, lowres 400+100)");
  // the value given but equal to the default: the same set, the same row
  EXPECT_EQ(data_label(di + "ce_weight = 1.0\njitter = 2\nflip = false\n"), "deepinversion (dsgq, lowres 400+100)");
  EXPECT_EQ(data_label(di, {"synth.ce_weight=10"}), "deepinversion (dsgq, lowres 400+100, ce_weight 10)");
  EXPECT_EQ(data_label(di + "ce_weight = 30.0\n"), "deepinversion (dsgq, lowres 400+100, ce_weight 30)");
  EXPECT_EQ(data_label(di + "jitter = 4\nflip = true\niters = 500\n"), "deepinversion (dsgq, jitter 4, flip)");
  EXPECT_EQ(data_label(di + "crop = 4\nflip = true\nstem_l1 = 100.0\ntv_l2 = 0.1\n"),
            "deepinversion (dsgq, lowres 400+100, tv_l2 0.1, flip, crop 4, stem_l1 100)");
  // the settings named before keep their names, once ("dsgq" names the preset's diverse start, so not beside another)
  EXPECT_EQ(data_label(di + "init = \"dead_leaves\"\nmix = 0.5\n"),
            "deepinversion (dead-leaves start, mix 0.5, lowres 400+100)");
  EXPECT_EQ(data_label(di + "soft_target = 0.95\nce_weight = 30.0\n"),
            "deepinversion (dsgq, lowres 400+100, ce_weight 30, soft_target 0.95)");
  // other methods: their own notes, and the shared settings (clip, the early stop) too
  EXPECT_EQ(data_label("method = \"zeroq\"\n"), "zeroq");
  EXPECT_EQ(data_label("method = \"zeroq\"\nclip = true\n"), "zeroq (clip)");
  EXPECT_EQ(data_label("method = \"dsg\"\nlse = false\nstop_rtol = 0.01\n"), "dsg (no LSE, stop_rtol 0.01)");
  // real images are not made, so no synthesis setting names them
  EXPECT_EQ(data_label("method = \"real\"\nreal_pick = \"seeded\"\n"), "real (drawn by seed)");
}

TEST(ReportLabels, NameTheProtocolAndItsVariants) {
  const auto method = [](const std::string& quant) {
    return report_labels(parse_run_config("[quant]\n" + quant, "t.toml", {})).method;
  };
  EXPECT_EQ(method("protocol = \"qdrop\"\n"), "qdrop/mse");
  EXPECT_EQ(method("protocol = \"qdrop\"\n[quant.recon]\ndrop = 0.0\n"), "qdrop/mse (drop 0)");
  EXPECT_EQ(method("protocol = \"adaround\"\n"), "adaround/mse");
  EXPECT_EQ(method("protocol = \"zeroq\"\n"), "zeroq/ema");
}
