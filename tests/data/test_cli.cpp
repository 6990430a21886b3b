// The dsgq binary on bad input: exit code 2 and one line that names the file/key/tensor, the value and what was
// expected. Fixtures are made from the real data at test time.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>

#include "core/fs.hpp"
#include "models/checkpoint.hpp"
#include "test_util.hpp"

using namespace dsgq;
using test::dsgq_bin;

namespace {

// Lines the run printed at error level.
std::vector<std::string> error_lines(const std::string& out) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    const std::string line = out.substr(pos, end - pos);
    if (line.find("] error: ") != std::string::npos) lines.push_back(line);
    pos = end + 1;
  }
  return lines;
}

// Runs `dsgq eval` with the given extra arguments; expects exit 2 and exactly one error line containing every
// fragment.
void expect_bad_input(const std::string& args, const std::vector<std::string>& fragments, test::TempDir& tmp) {
  const auto r = test::run_command(dsgq_bin() + " eval --set output.dir=" + (tmp / "runs") + " " + args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
  const auto lines = error_lines(r.output);
  ASSERT_EQ(lines.size(), 1u) << args << "\n" << r.output;
  for (const auto& f : fragments)
    EXPECT_NE(lines[0].find(f), std::string::npos) << "missing '" << f << "' in\n" << lines[0];
}

}  // namespace

TEST(Cli, MissingWeightsFile) {
  test::TempDir tmp;
  expect_bad_input("--set model.weights=/nonexistent/w.pt",
                   {"/nonexistent/w.pt: cannot open for reading (No such file or directory)"}, tmp);
}

TEST(Cli, TruncatedCheckpoint) {
  test::TempDir tmp;
  const std::string full = read_file(test::data_path("models/cifar10_resnet20.pt"));
  atomic_write_file(tmp / "trunc.pt", full.substr(0, full.size() - 3000));
  expect_bad_input("--set model.weights=" + (tmp / "trunc.pt"),
                   {tmp / "trunc.pt", "truncated or corrupt zip archive", "expected a complete torch.save checkpoint"},
                   tmp);
}

TEST(Cli, NonZipCheckpoint) {
  test::TempDir tmp;
  const std::string f = test::data_path("cifar10/batches.meta.txt");
  expect_bad_input("--set model.weights=" + f,
                   {f, "is not a zip archive (starts with bytes 61 69 72 70)", "expected a torch.save checkpoint"},
                   tmp);
}

TEST(Cli, CheckpointOfAnotherArchitecture) {
  test::TempDir tmp;
  const std::string f = test::data_path("models/cifar10_resnet56.pt");
  expect_bad_input("--set model.arch=resnet20 --set model.weights=" + f,
                   {f, "does not fit resnet20", "unexpected (layer1.3.conv1.weight [16,16,3,3]",
                    "expected the resnet20 state_dict (97 tensors)"},
                   tmp);
}

TEST(Cli, WrongShapedTensor) {
  test::TempDir tmp;
  auto ck = models::read_checkpoint(test::data_path("models/cifar10_resnet20.pt"));
  for (auto& nt : ck.tensors)
    if (nt.name == "linear.weight") nt.tensor = torch::zeros({10, 32});
  models::write_checkpoint(tmp / "bad.pt", ck.tensors);
  expect_bad_input("--set model.weights=" + (tmp / "bad.pt"),
                   {tmp / "bad.pt", "1 wrong (linear.weight is [10,32], expected [10,64])"}, tmp);
}

TEST(Cli, UnknownConfigKey) {
  test::TempDir tmp;
  atomic_write_file(tmp / "c.toml", "[eval]\nbatch_size = 100\n");
  expect_bad_input(
      "--config " + (tmp / "c.toml"),
      {tmp / "c.toml" + " [eval]: batch_size is an unknown key; known keys in [eval]: batch, data, n_images"}, tmp);
}

TEST(Cli, WrongValueType) {
  test::TempDir tmp;
  atomic_write_file(tmp / "c.toml", "[eval]\nbatch = \"large\"\n");
  expect_bad_input("--config " + (tmp / "c.toml"),
                   {tmp / "c.toml" + " [eval]: batch = 'large' is a string; expected an integer 1..1048576"}, tmp);
}

TEST(Cli, EmptyAndTruncatedCifarFiles) {
  test::TempDir tmp;
  atomic_write_file(tmp / "empty.bin", "");
  expect_bad_input("--set eval.data=" + (tmp / "empty.bin"),
                   {tmp / "empty.bin" + ": CIFAR-10 file is empty (0 bytes); expected a multiple of 3073-byte records"},
                   tmp);
  const std::string full = read_file(test::data_path("cifar10/test_batch.bin"));
  atomic_write_file(tmp / "trunc.bin", full.substr(0, 5 * 3073 + 1000));
  expect_bad_input("--set eval.data=" + (tmp / "trunc.bin"),
                   {tmp / "trunc.bin" + ": CIFAR-10 file size 16365 bytes is not a multiple of the 3073-byte record"},
                   tmp);
}

// srun without --mpi=pmix: every task is a singleton MPI world; refused rather than run N times over.
TEST(Cli, SrunTasksWithoutMpiWorldRefused) {
  const auto r = test::run_command("SLURM_STEP_NUM_TASKS=4 " + dsgq_bin() + " eval --dry-run");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("srun started 4 tasks but MPI sees a world of 1 rank"), std::string::npos) << r.output;
}

TEST(Cli, CudaRefusedInCpuBuild) {
  test::TempDir tmp;
  expect_bad_input("--set runtime.device=cuda", {"device = 'cuda': this dsgq build is CPU-only"}, tmp);
}

TEST(Cli, TwoRanksBothExitPromptlyOnBadInput) {
  test::TempDir tmp;
  const std::string mpiexec = test::env_or("DSGQ_MPIEXEC", "mpiexec");
  const auto t0 = std::chrono::steady_clock::now();
  const auto r =
      test::run_command("timeout 60 " + mpiexec + " -n 2 --oversubscribe " + dsgq_bin() +
                        " eval --set output.dir=" + (tmp / "runs") + " --set model.weights=/nonexistent/w.pt");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_LT(secs, 30.0) << r.output;
  const auto lines = error_lines(r.output);
  ASSERT_EQ(lines.size(), 1u) << r.output;
  EXPECT_NE(lines[0].find("/nonexistent/w.pt: cannot open for reading"), std::string::npos) << lines[0];
}

TEST(Cli, DryRunPrintsResolvedConfigAndInspectDescribesWeights) {
  test::TempDir tmp;
  auto r = test::run_command(dsgq_bin() + " eval --dry-run --set eval.batch=77 --set output.dir=" + (tmp / "runs"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("batch = 77"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("cifar10_resnet20.pt"), std::string::npos) << r.output;
  r = test::run_command(dsgq_bin() + " inspect " + test::data_path("models/cifar10_resnet8_mlperf_tiny.pt"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("48 tensors"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("fits architecture: resnet8"), std::string::npos) << r.output;
  r = test::run_command(dsgq_bin() + " frobnicate");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(
      r.output.find(
          "unknown command 'frobnicate'; expected one of eval, synth, quantize, run, sweep, report, pack, inspect"),
      std::string::npos)
      << r.output;
}

TEST(Cli, EvalWritesRecordAndSkipsWhenDone) {
  test::TempDir tmp;
  const std::string cmd = dsgq_bin() + " eval --threads 2 --set eval.n_images=500 --set output.dir=" + (tmp / "runs");
  auto r = test::run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string rec = read_file(tmp / "runs/results/resnet20-fp32-n500.json");
  EXPECT_NE(rec.find("\"top1\""), std::string::npos);
  r = test::run_command(cmd);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("already done"), std::string::npos) << r.output;
  r = test::run_command(dsgq_bin() + " eval --threads 2 --set eval.n_images=500 --set eval.data=" +
                        test::data_path("cifar10/data_batch_1.bin") + " --set output.dir=" + (tmp / "runs"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("exists for a different point"), std::string::npos) << r.output;
}

// The qdrop protocol's keys: drop is a probability, bits stay within 2..8.
TEST(Cli, QdropOutOfRangeValues) {
  test::TempDir tmp;
  expect_bad_input("--set quant.protocol=qdrop --set quant.recon.drop=1.5",
                   {"--set quant.recon.drop=1.5", "drop = '1.5' is out of range; expected 0..1"}, tmp);
  expect_bad_input("--set quant.protocol=qdrop --set quant.w_bits=1",
                   {"--set quant.w_bits=1", "w_bits = '1' is out of range; expected 2..8"}, tmp);
  expect_bad_input("--set quant.protocol=qdrop --set quant.a_bits=9",
                   {"--set quant.a_bits=9", "a_bits = '9' is out of range; expected 2..8"}, tmp);
}
