#include "pipeline/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/json_record.hpp"
#include "pipeline/stage_support.hpp"

namespace dsgq::pipeline {
namespace {

struct Cell {
  std::vector<double> top1;
  std::map<int64_t, std::vector<std::string>> keys_by_seed;  // the records behind top1, by seed
  // The seeds with more than one record: points whose settings the row's name does not tell apart (e.g. 1000 and 2000
  // reconstruction steps, or sets of records written before their setting was named), averaged together.
  std::vector<std::pair<int64_t, std::vector<std::string>>> mixed() const {
    std::vector<std::pair<int64_t, std::vector<std::string>>> out;
    for (const auto& [seed, keys] : keys_by_seed)
      if (keys.size() > 1) out.emplace_back(seed, keys);
    return out;
  }
  double mean() const {
    double s = 0;
    for (double v : top1) s += v;
    return s / static_cast<double>(top1.size());
  }
  double std() const {  // sample standard deviation (n - 1); 0 for one seed
    if (top1.size() < 2) return 0;
    const double m = mean();
    double s = 0;
    for (double v : top1) s += (v - m) * (v - m);
    return std::sqrt(s / static_cast<double>(top1.size() - 1));
  }
};

// "w4a4" -> sort key: higher weight bits first, then higher activation bits.
std::pair<int, int> bits_of(const std::string& precision) {
  int w = 0, a = 0;
  std::sscanf(precision.c_str(), "w%da%d", &w, &a);
  return {-w, -a};
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// A row name as LaTeX text: the characters a name may hold that LaTeX reads as commands ("ce_weight 10", ...).
std::string tex_text(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '_' || c == '%' || c == '&' || c == '#' || c == '$' || c == '{' || c == '}') out += '\\';
    out += c;
  }
  return out;
}

// The footnote of a cell holding more than one record of a seed: which records, in the words of `text`
// (identity for Markdown, tex_text for LaTeX).
std::string mixed_note(const std::string& column, const std::string& data, const std::string& method,
                       const std::vector<std::pair<int64_t, std::vector<std::string>>>& mixed,
                       std::string (*text)(const std::string&)) {
  std::string note = upper(column) + " of " + text(data) + " / " + text(method) +
                     ": records made with settings the row's name does not tell apart, averaged together (";
  for (size_t s = 0; s < mixed.size(); ++s) {
    note += (s ? "; seed " : "seed ") + std::to_string(mixed[s].first) + ": ";
    for (size_t k = 0; k < mixed[s].second.size(); ++k) note += (k ? ", " : "") + text(mixed[s].second[k]);
  }
  return note + ").";
}

std::string same_text(const std::string& s) { return s; }

struct Table {
  std::string arch;
  double fp32 = NAN;
  std::vector<std::string> columns;                                                 // precisions, sorted
  std::map<std::pair<std::string, std::string>, std::map<std::string, Cell>> rows;  // (data, method) -> col -> cell
};

// Every record of <runs_dir>/results, by architecture: FP32 accuracy and the (data, method) x precision cells.
std::map<std::string, Table> read_tables(const std::vector<std::string>& files) {
  std::map<std::string, Table> tables;
  for (const auto& f : files) {
    const nlohmann::json r = io::read_json(f);
    const nlohmann::json& p = r.at("point");
    Table& t = tables[p.at("arch").get<std::string>()];
    t.arch = p.at("arch").get<std::string>();
    const nlohmann::json& m = r.at("metrics");
    if (p.value("stage", std::string()) == "eval" || !p.contains("protocol")) {  // an FP32 evaluation record
      if (std::isnan(t.fp32)) t.fp32 = m.at("top1").get<double>();
      continue;
    }
    if (std::isnan(t.fp32)) t.fp32 = m.at("fp32_top1").get<double>();
    const std::string precision = p.at("precision").get<std::string>();
    std::string data = p.value("method", std::string("file")),
                method = p.at("protocol").get<std::string>() + "/" + p.value("act_observer", std::string("?"));
    if (r.contains("labels")) {
      data = r["labels"].at("data").get<std::string>();
      method = r["labels"].at("method").get<std::string>();
    }
    Cell& cell = t.rows[{data, method}][precision];
    cell.top1.push_back(m.at("top1").get<double>());
    cell.keys_by_seed[p.value("seed", int64_t(0))].push_back(r.value("key", std::filesystem::path(f).stem().string()));
    if (std::find(t.columns.begin(), t.columns.end(), precision) == t.columns.end()) t.columns.push_back(precision);
  }
  for (auto& [arch, t] : tables)
    std::sort(t.columns.begin(), t.columns.end(),
              [](const std::string& a, const std::string& b) { return bits_of(a) < bits_of(b); });
  return tables;
}

struct Rendered {
  std::string md, csv, tex;
};

// One architecture's table in the three formats: a header, the FP32 row, one row per (data, method).
void render(const Table& t, Rendered& out) {
  std::string& md = out.md;
  std::string& tex = out.tex;
  md += "### " + t.arch + "\n\n| data | method |";
  std::string sep = "|---|---|";
  for (const auto& c : t.columns) md += " " + upper(c) + " |", sep += "---|";
  md += "\n" + sep + "\n| FP32 | - |";
  for (size_t i = 0; i < t.columns.size(); ++i) md += " " + fmt(t.fp32) + " |";
  md += "\n";
  out.csv += t.arch + ",FP32,-,fp32," + fmt(t.fp32) + ",0,1\n";
  tex += "% " + t.arch + "\n\\begin{tabular}{ll" + std::string(t.columns.size(), 'c') + "}\n\\toprule\nData & Method";
  for (const auto& c : t.columns) tex += " & " + upper(c);
  tex += " \\\\\n\\midrule\nFP32 & --";
  for (size_t i = 0; i < t.columns.size(); ++i) tex += " & " + fmt(t.fp32);
  tex += " \\\\\n";
  std::string md_notes, tex_notes;  // the mixed cells' footnotes
  for (const auto& [row, cells] : t.rows) {
    md += "| " + row.first + " | " + row.second + " |";
    tex += tex_text(row.first) + " & " + tex_text(row.second);
    for (const auto& c : t.columns) {
      const auto it = cells.find(c);
      if (it == cells.end()) {
        md += " - |";
        tex += " & --";
        continue;
      }
      const Cell& cell = it->second;
      const std::string n = cell.top1.size() > 1 ? " (" + std::to_string(cell.top1.size()) + ")" : "";
      const auto mixed = cell.mixed();
      md += " " + fmt(cell.mean()) + (cell.top1.size() > 1 ? " ± " + fmt(cell.std()) : "") + n +
            (mixed.empty() ? "" : " \\*") + " |";
      tex += " & " + fmt(cell.mean()) + (cell.top1.size() > 1 ? "$\\pm$" + fmt(cell.std()) : "") +
             (mixed.empty() ? "" : "$^*$");
      if (!mixed.empty()) {  // one footnote per cell: its seeds with more than one record, and those records
        md_notes += "\\* " + mixed_note(c, row.first, row.second, mixed, same_text) + "\n\n";
        tex_notes += "$^*$ " + mixed_note(c, row.first, row.second, mixed, tex_text) + "\n\n";
      }
      out.csv += t.arch + ",\"" + row.first + "\"," + row.second + "," + c + "," + fmt(cell.mean()) + "," +
                 fmt(cell.std()) + "," + std::to_string(cell.top1.size()) + "\n";
    }
    md += "\n";
    tex += " \\\\\n";
  }
  md += "\n" + md_notes;
  tex += "\\bottomrule\n\\end{tabular}\n\n" + tex_notes;
}

}  // namespace

std::string write_report(const std::string& runs_dir) {
  const std::string results = runs_dir + "/results";
  if (!std::filesystem::is_directory(results))
    throw InputError(runs_dir + ": has no results/ folder; expected the output.dir of dsgq runs or sweeps");
  check_results_dir(runs_dir);
  const std::vector<std::string> files = result_files(runs_dir);
  if (files.empty()) throw InputError(results + ": no result records; expected <key>.json files from dsgq run/sweep");
  Rendered out;
  out.csv = "arch,data,method,precision,top1_mean,top1_std,n_seeds\n";
  for (const auto& [arch, t] : read_tables(files)) render(t, out);
  out.md = "Top-1 (%) on the test set, mean ± sample standard deviation over seeds (number of seeds in brackets).\n\n" +
           out.md;
  make_dirs(runs_dir + "/report");
  atomic_write_file(runs_dir + "/report/table.md", out.md);
  atomic_write_file(runs_dir + "/report/table.csv", out.csv);
  atomic_write_file(runs_dir + "/report/table.tex", out.tex);
  return out.md;
}

}  // namespace dsgq::pipeline
