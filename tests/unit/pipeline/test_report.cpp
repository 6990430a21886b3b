// src/pipeline/report.cpp: the table of a results folder, on hand-written records.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/fs.hpp"
#include "io/json_record.hpp"
#include "pipeline/report.hpp"
#include "test_util.hpp"

namespace dsgq {
namespace {
// One quantize record of resnet20 W4A4 named by `data` in dsgq report's row labels.
void write_record(const test::TempDir& dir, const std::string& key, const std::string& data, int seed, double top1) {
  const nlohmann::json r = {
      {"format", dsgq::io::kResultFormat},
      {"key", key},
      {"point",
       {{"arch", "resnet20"}, {"precision", "w4a4"}, {"protocol", "qdrop"}, {"stage", "quantize"}, {"seed", seed}}},
      {"metrics", {{"top1", top1}, {"fp32_top1", 91.73}}},
      {"labels", {{"data", data}, {"method", "qdrop/mse"}}}};
  std::filesystem::create_directories(dir.path / "results");
  std::ofstream(dir / ("results/" + key + ".json")) << r.dump();
}
}  // namespace

TEST(Report, AveragesSeedsPerRowAndFlagsACellHoldingTwoRecordsOfOneSeed) {
  test::TempDir dir;
  write_record(dir, "a0", "deepinversion (dsgq)", 0, 90.0);
  write_record(dir, "a1", "deepinversion (dsgq)", 1, 91.0);
  write_record(dir, "b0", "deepinversion (dsgq, ce_weight 10)", 0, 92.0);
  std::string md = dsgq::pipeline::write_report(dir.path.string());
  EXPECT_NE(md.find("| deepinversion (dsgq) | qdrop/mse | 90.50 ± 0.71 (2) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| deepinversion (dsgq, ce_weight 10) | qdrop/mse | 92.00 |"), std::string::npos) << md;
  EXPECT_EQ(md.find('*'), std::string::npos) << md;
  // a second record of seed 0 under the first row's name (a set made with a setting the name does not carry)
  write_record(dir, "c0", "deepinversion (dsgq)", 0, 93.0);
  md = dsgq::pipeline::write_report(dir.path.string());
  EXPECT_NE(md.find("| deepinversion (dsgq) | qdrop/mse | 91.33 ± 1.53 (3) \\* |"), std::string::npos) << md;
  EXPECT_NE(md.find("\\* W4A4 of deepinversion (dsgq) / qdrop/mse: records made with settings the row's name does not "
                    "tell apart, averaged together (seed 0: a0, c0)."),
            std::string::npos)
      << md;
  EXPECT_EQ(md.find("ce_weight 10) | qdrop/mse | 92.00 \\*"), std::string::npos) << md;
  // the LaTeX table: row names as LaTeX text, and the same footnote under the tabular
  const std::string tex = read_file(dir / "report/table.tex");
  EXPECT_NE(tex.find("deepinversion (dsgq, ce\\_weight 10) & qdrop/mse & 92.00 \\\\"), std::string::npos) << tex;
  EXPECT_EQ(tex.find("ce_weight"), std::string::npos) << tex;
  EXPECT_NE(tex.find("deepinversion (dsgq) & qdrop/mse & 91.33$\\pm$1.53$^*$"), std::string::npos) << tex;
  EXPECT_NE(tex.find("\\end{tabular}\n\n$^*$ W4A4 of deepinversion (dsgq) / qdrop/mse: records made with settings "
                     "the row's name does not tell apart, averaged together (seed 0: a0, c0)."),
            std::string::npos)
      << tex;
}
}  // namespace dsgq
