#pragma once
// `dsgq report RUNS_DIR`: the result records of RUNS_DIR/results aggregated into the paper's table layout, one
// table per architecture: rows data source x method (FP32 first), columns bit-widths (W8A8 first), cells top-1
// mean +/- sample standard deviation over seeds (n shown when seeds differ in count; a cell holding two records of one
// seed, settings its row's name does not tell apart, is marked * with a footnote naming them). Written as
// RUNS_DIR/report/table.{md,csv,tex} (atomically); the Markdown is returned for printing. Reads records only,
// never logs; a record of another format version is an InputError.
#include <string>

namespace dsgq::pipeline {

std::string write_report(const std::string& runs_dir);

}  // namespace dsgq::pipeline
