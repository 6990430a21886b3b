// dsgq sweep end to end on the real resnet20 (CTest entry `sweep`, labels mpi and data): a 12-point grid gives the
// same records on 1, 2 and 3 ranks with each calibration set made once; kill -9 of one rank ends the job and the
// rerun computes only the missing points; bad sweep files exit 2 with one clear line.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/fs.hpp"
#include "dsgq/version.hpp"
#include "io/json_record.hpp"
#include "test_util.hpp"

using namespace dsgq;
using test::dsgq_bin;
using test::expect_exit2;
using test::mpiexec;
using test::wait_for;

namespace {

// 3 data sources x 2 bit-widths x 2 protocols, each point a few seconds.
const char* kGrid = R"(
[sweep]
name = "test-12"
[model]
arch = "resnet20"
[synth]
method = ["gaussian", "zeroq", "real"]
n_images = 12
batch = 12
iters = 20
[quant]
protocol = ["zeroq", "adaround"]
bits = ["w8a8", "w4a4"]
[quant.adaround]
iters = 20
[eval]
n_images = 300
)";

std::string write_sweep(const test::TempDir& tmp, const std::string& name, const std::string& text) {
  const std::string path = tmp / name;
  atomic_write_file(path, text);
  return path;
}

// key -> (top1 correct, top5 correct, fp32 top1) of every record in dir/results.
std::map<std::string, std::vector<double>> metrics_of(const std::string& dir) {
  std::map<std::string, std::vector<double>> m;
  if (!std::filesystem::exists(dir + "/results")) return m;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/results")) {
    if (e.path().extension() != ".json") continue;
    const nlohmann::json r = io::read_json(e.path().string());
    m[r["key"].get<std::string>()] = {r["metrics"]["top1_correct"].get<double>(),
                                      r["metrics"]["top5_correct"].get<double>(),
                                      r["metrics"]["fp32_top1"].get<double>()};
  }
  return m;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = 0; (pos = text.find(what, pos)) != std::string::npos; ++pos) ++n;
  return n;
}

}  // namespace

TEST(Sweep, SameRecordsOnOneTwoThreeRanksEachDatasetOnceAndKillNineResumes) {
  test::TempDir tmp;
  const std::string file = write_sweep(tmp, "grid.toml", kGrid);
  auto sweep = [&](int ranks, const std::string& dir, const std::string& extra = "") {
    return test::run_command(mpiexec() + " -n " + std::to_string(ranks) + " " + dsgq_bin() +
                             " sweep --threads 1 --config " + file + " --set output.dir=" + (tmp / dir) + extra);
  };
  const auto list =
      test::run_command(dsgq_bin() + " sweep --list --config " + file + " --set output.dir=" + (tmp / "r1"));
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_EQ(count(list.output, "pending  "), 12u) << list.output;
  EXPECT_EQ(count(list.output, "missing  "), 3u) << list.output;

  std::map<std::string, std::vector<double>> reference;
  for (int ranks : {1, 2, 3}) {
    const std::string dir = "r" + std::to_string(ranks);
    const auto r = sweep(ranks, dir);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // Each calibration set is synthesized exactly once (rank 0 logs one "images in" line per set).
    EXPECT_EQ(count(r.output, " images in "), 3u) << r.output;
    // Progress: each set numbered before it is made, each point with the points left and a time estimate.
    EXPECT_EQ(count(r.output, "sweep: calibration set "), 3u) << r.output;
    EXPECT_NE(r.output.find("sweep: calibration set 3/3, "), std::string::npos) << r.output;
    EXPECT_EQ(count(r.output, " not yet started, about "), 12u) << r.output;
    EXPECT_NE(r.output.find("; 0 not yet started, about 00:00 left"), std::string::npos) << r.output;
    const auto m = metrics_of(tmp / dir);
    EXPECT_EQ(m.size(), 12u);
    if (ranks == 1) {
      reference = m;
      // The tables and figures of that folder: one table, FP32 first, 3 data sources x 2 methods, both columns.
      const auto rep = test::run_command(dsgq_bin() + " report " + (tmp / dir));
      ASSERT_EQ(rep.exit_code, 0) << rep.output;
      const std::string md = read_file(tmp / dir + "/report/table.md");
      EXPECT_NE(md.find("| data | method | W8A8 | W4A4 |"), std::string::npos) << md;
      EXPECT_NE(md.find("| FP32 | - |"), std::string::npos) << md;
      for (const char* row : {"| gaussian | zeroq/ema |", "| zeroq | adaround/mse |", "| real | zeroq/ema |"})
        EXPECT_NE(md.find(row), std::string::npos) << row << "\n" << md;
      EXPECT_EQ(count(read_file(tmp / dir + "/report/table.csv"), "\n"), 1u + 1u + 12u);  // header, FP32, cells
      const auto fig =
          test::run_command("/usr/bin/python3 " + std::string(kSourceDir) + "/analysis/figures.py " + (tmp / dir));
      ASSERT_EQ(fig.exit_code, 0) << fig.output;
      for (const char* png : {"accuracy_vs_bits_resnet20.png", "loss_curves.png", "samples.png", "bn_spread.png"})
        EXPECT_GT(std::filesystem::file_size(tmp / dir + "/report/" + png), 10000u) << png;
    }
    EXPECT_EQ(m, reference) << ranks << " ranks";
  }
  // A rerun finds everything done and makes nothing.
  const auto again = sweep(2, "r2");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("12 points, 12 done, 0 to run"), std::string::npos) << again.output;
  EXPECT_EQ(count(again.output, " images in "), 0u) << again.output;
  EXPECT_EQ(count(again.output, "sweep: calibration set "), 0u) << again.output;

  // kill -9 of one of two ranks once some points are done.
  const std::string log = tmp / "killed.log", rc = tmp / "killed.rc";
  test::run_command("(" + mpiexec() + " -n 2 " + dsgq_bin() + " sweep --threads 1 --config " + file +
                    " --set output.dir=" + (tmp / "killed") + " --set eval.n_images=2000 > " + log +
                    " 2>&1; echo $? > " + rc + ") > /dev/null 2>&1 &");
  ASSERT_TRUE(wait_for([&] { return metrics_of(tmp / "killed").size() >= 2; }, 180)) << read_file(log);
  const auto pid = test::run_command("pgrep -f '^" + dsgq_bin() + " sweep .*killed' | tail -1");
  ASSERT_FALSE(pid.output.empty());
  const auto t0 = std::chrono::steady_clock::now();
  test::run_command("kill -9 " + pid.output);
  ASSERT_TRUE(wait_for([&] { return file_exists(rc); }, 60)) << "the job did not end within 60 s";
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(std::stoi(read_file(rc)), 0);
  const size_t done = metrics_of(tmp / "killed").size();
  std::printf("[ info     ] sweep: the job ended %.1f s after kill -9 of one rank, %zu of 12 points done\n", secs,
              done);
  EXPECT_LT(done, 12u) << "the kill came too late to test a resume";
  const auto rerun = sweep(2, "killed", " --set eval.n_images=2000");
  ASSERT_EQ(rerun.exit_code, 0) << rerun.output;
  EXPECT_NE(rerun.output.find("12 points, " + std::to_string(done) + " done, " + std::to_string(12 - done) + " to run"),
            std::string::npos)
      << rerun.output;
  EXPECT_EQ(metrics_of(tmp / "killed").size(), 12u);
  for (const auto& e : std::filesystem::recursive_directory_iterator(tmp / "killed"))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << "leftover " << e.path();
}

TEST(Sweep, BadInputExitsTwo) {
  test::TempDir tmp;
  auto run = [&](const std::string& text, const std::string& extra = "") {
    const std::string file = write_sweep(tmp, "bad.toml", "[output]\ndir = \"" + (tmp / "runs") + "\"\n" + text);
    return test::run_command(dsgq_bin() + " sweep --threads 1 --list --config " + file + extra);
  };
  const std::string file = tmp / "bad.toml";
  expect_exit2(run("[synth]\nmethod = []\n"),
               file + ": synth.method = [] is an empty list; expected at least one value");
  expect_exit2(run("[quant]\nbits = [\"w4a4\", \"w8a8\", \"w4a4\"]\n"), "are the same point (key ");
  expect_exit2(test::run_command(dsgq_bin() + " sweep --list --config " +
                                 write_sweep(tmp, "bad.toml", "[output]\ndir = [\"a\", \"b\"]\n")),
               file + ": output.dir = [ 'a', 'b' ] is a list, but [output] cannot vary in a sweep; expected one value");
  expect_exit2(run("[quant]\nw_bits = [4, 9]\n"),
               "(sweep point quant.w_bits=9): w_bits = '9' is out of range; expected 2..8");
  expect_exit2(run("[quant]\nbits = [\"w4\"]\n"), "quant.bits = 'w4' is not a bit-width; expected \"wXaY\"");
  expect_exit2(run("[sweep]\nsize = 3\n"), "[sweep]: size is an unknown key; known keys in [sweep]: name, grid");
  expect_exit2(run("[quant]\nbits = [\"w8a8\"]\n", " --only resnet20-nope"),
               "--only 'resnet20-nope': no such point in");
  // A results folder written by an incompatible dsgq version.
  std::filesystem::create_directories(tmp.path / "runs/results");
  atomic_write_file(tmp / "runs/results/old.json", R"({"format": "dsgq-result/0", "key": "old"})");
  expect_exit2(run("[quant]\nbits = [\"w8a8\"]\n"),
               tmp / "runs/results/old.json" +
                   ": format = 'dsgq-result/0' was written by an incompatible dsgq version; expected dsgq-result/1");
}
