#include <gtest/gtest.h>

#include "config/run_config.hpp"
#include "config/sweep_config.hpp"
#include "core/error.hpp"

using dsgq::InputError;
using dsgq::config::parse_run_config;

namespace {
// The message of the InputError that parsing `text` with `sets` throws ("" if none).
std::string error_of(const std::string& text, const std::vector<std::string>& sets = {}) {
  try {
    parse_run_config(text, "configs/t.toml", sets);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(RunConfig, DefaultsAreTheEmbeddedQuickstart) {
  ::setenv("DSGQ_DATA", "/d", 1);
  const auto c = parse_run_config("", "(defaults)", {});
  EXPECT_EQ(c.model.arch, "resnet20");
  EXPECT_EQ(c.eval.data, "/d/cifar10/test_batch.bin");
  EXPECT_EQ(c.eval.batch, 500);
  EXPECT_EQ(c.runtime.device, "cpu");
  ::unsetenv("DSGQ_DATA");
}

TEST(RunConfig, ReadsEveryKeyAndAppliesOverrides) {
  const auto c = parse_run_config(
      "[model]\narch = \"resnet56\"\nweights = \"/w.pt\"\n[eval]\ndata = \"/e.bin\"\nbatch = 64\n"
      "[output]\ndir = \"runs/x\"\n[runtime]\ndevice = \"cuda:1\"\nthreads = 3\n",
      "configs/t.toml", {"eval.n_images=1000", "model.arch=resnet8", "output.dir=\"runs/y\""});
  EXPECT_EQ(c.model.arch, "resnet8");
  EXPECT_EQ(c.model.weights, "/w.pt");
  EXPECT_EQ(c.eval.batch, 64);
  EXPECT_EQ(c.eval.n_images, 1000);
  EXPECT_EQ(c.output.dir, "runs/y");
  EXPECT_EQ(c.runtime.device, "cuda:1");
  EXPECT_EQ(c.runtime.threads, 3);
  // The resolved TOML parses back to the same config.
  const auto back = parse_run_config(dsgq::config::to_toml(c), "resolved.toml", {});
  EXPECT_EQ(back.model.arch, "resnet8");
  EXPECT_EQ(back.eval.n_images, 1000);
  EXPECT_EQ(back.runtime.device, "cuda:1");
}

TEST(RunConfig, UnknownKeyListsKnownKeys) {
  EXPECT_EQ(error_of("[eval]\nbatchsize = 3\n"),
            "configs/t.toml [eval]: batchsize is an unknown key; known keys in [eval]: batch, data, n_images");
}

TEST(RunConfig, UnknownSectionListsKnownSections) {
  EXPECT_EQ(error_of("[evall]\nbatch = 3\n"),
            "configs/t.toml: [evall] is an unknown section; known sections: model, synth, quant, eval, output, runtime");
}

TEST(RunConfig, WrongTypeNamesKeyValueAndExpectation) {
  EXPECT_EQ(error_of("[eval]\nbatch = \"big\"\n"),
            "configs/t.toml [eval]: batch = 'big' is a string; expected an integer 1..1048576");
  EXPECT_EQ(error_of("[model]\narch = 20\n"), "configs/t.toml [model]: arch = '20' is an integer; expected a string");
}

TEST(RunConfig, OutOfRangeAndBadEnum) {
  EXPECT_EQ(error_of("[eval]\nbatch = 0\n"), "configs/t.toml [eval]: batch = '0' is out of range; expected 1..1048576");
  EXPECT_EQ(error_of("[runtime]\ndevice = \"gpu\"\n"),
            "configs/t.toml [runtime]: device = 'gpu' is not a device; expected cpu, cuda or cuda:N");
  EXPECT_EQ(error_of("[model]\ndataset = \"mnist\"\n"),
            "configs/t.toml [model]: dataset = 'mnist' is not allowed; expected one of , cifar10, imagenet");
}

TEST(RunConfig, OverrideErrorsNameTheOverride) {
  EXPECT_EQ(error_of("", {"eval.batch=abc"}), "--set eval.batch=abc: batch = 'abc' is a string; expected an integer 1..1048576");
  EXPECT_EQ(error_of("", {"evalbatch=3"}), "--set evalbatch=3: expected section.key=value (e.g. --set eval.batch=256)");
  EXPECT_EQ(error_of("", {"eval.bogus=1"}).rfind("--set eval.bogus=1: bogus is an unknown key", 0), 0u);
}

TEST(RunConfig, SyntaxErrorNamesLineAndColumn) {
  const std::string e = error_of("[eval]\nbatch = = 3\n");
  EXPECT_EQ(e.rfind("configs/t.toml:2:", 0), 0u) << e;
  EXPECT_NE(e.find("TOML syntax error"), std::string::npos) << e;
}

// Sweep files: lists expand to the cartesian product (last key fastest), [[sweep.grid]] tables union their products,
// quant.bits sets both widths, and every point is validated like a run file.
TEST(SweepConfig, GridsExpandInOrderWithBitsShorthand) {
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
)", "s.toml", {"quant.protocol=adaround"});
  EXPECT_EQ(s.name, "t");
  ASSERT_EQ(s.points.size(), 8u);  // 2 bits x 2 methods, then 1 bits x 2 methods x 2 seeds
  EXPECT_EQ(s.points[0].label, "quant.bits=w8a8 synth.method=dsg");
  EXPECT_EQ(s.points[1].label, "quant.bits=w8a8 synth.method=real");
  EXPECT_EQ(s.points[2].cfg.quant.w_bits, 4);
  EXPECT_EQ(s.points[2].cfg.quant.a_bits, 8);
  EXPECT_EQ(s.points[4].label, "quant.bits=w3a3 synth.method=dsg synth.seed=0");
  EXPECT_EQ(s.points[7].cfg.synth.method, "real");
  EXPECT_EQ(s.points[7].cfg.synth.seed, 1);
  EXPECT_EQ(s.points[7].cfg.quant.w_bits, 3);
  EXPECT_EQ(s.points[7].cfg.quant.act_observer, "mse");  // auto under the adaround protocol set on the command line
  EXPECT_EQ(s.axes, (std::vector<std::string>{"quant.bits", "synth.method", "synth.seed"}));
}

TEST(SweepConfig, RunFileWithoutListsIsOnePoint) {
  const auto s = dsgq::config::parse_sweep("[quant]\nw_bits = 6\n", "s.toml", {});
  ASSERT_EQ(s.points.size(), 1u);
  EXPECT_EQ(s.points[0].cfg.quant.w_bits, 6);
  EXPECT_EQ(s.points[0].cfg.quant.act_observer, "ema");
  EXPECT_TRUE(s.axes.empty());
}
