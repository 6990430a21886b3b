#include "apps/cli.hpp"

#include <cstdio>
#include <cstdlib>

#include "core/error.hpp"
#include "dsgq/version.hpp"

namespace dsgq::apps {
namespace {

struct CommandInfo {
  const char* name;
  const char* synopsis;
  bool available;  // implemented in this version
};
const CommandInfo kCommands[] = {
    {"eval", "eval     --config FILE   evaluate the FP32 network (top-1/top-5), images split over ranks", true},
    {"synth", "synth    --config FILE   synthesize a calibration set (dsg | zeroq | gaussian | real) to HDF5", true},
    {"inspect", "inspect  FILE            describe a .pt checkpoint, a .h5 synthetic set or a .json result record", true},
    {"quantize", "quantize --config FILE   calibrate on a calibration set, export encodings, evaluate (zeroq protocol)", true},
    {"run", "run      --config FILE   synth (skipped when done) -> quantize -> eval for one point", true},
    {"sweep", "sweep    --config FILE   a grid of points (lists in a run file); resumable; ranks share the work", true},
    {"report", "report   RUNS_DIR        aggregate result records into tables (RUNS_DIR/report/table.md|csv|tex)", true},
    {"pack", "pack     --images DIR --out FILE.h5 [--labels FILE] [--synsets FILE] [--size 224] [--resize R]\n"
             "                           pack an ImageNet-style folder (torchvision eval preprocessing) into HDF5", true},
};

}  // namespace

std::string usage() {
  std::string u = std::string("dsgq ") + kVersion +
                  " - data-free quantization (DSG/ZeroQ synthesis, calibration, AdaRound) over MPI\n"
                  "usage: [mpirun -np N | srun] dsgq COMMAND [options]\n\ncommands:\n";
  for (const auto& c : kCommands) u += std::string("  ") + c.synopsis + "\n";
  u +=
      "\noptions:\n"
      "  --config FILE          run configuration (TOML); without it the embedded default (resnet20, CIFAR-10)\n"
      "  --set SECTION.KEY=VAL  override one config key (repeatable), e.g. --set eval.n_images=1000\n"
      "  --dry-run              validate everything, print the resolved config, exit\n"
      "  --force                redo finished work (overwrite the result record)\n"
      "  --list                 sweep: print every point, its key and state (done/pending), exit\n"
      "  --only KEY...          sweep: only these points (keys as --list prints them)\n"
      "  --shard I/N            sweep: only shard I of N (points grouped by calibration set, set g -> shard g % N)\n"
      "  --images DIR           pack: <wnid>/<image> tree, or a flat folder with --labels\n"
      "  --labels FILE          pack: '<file> <class index> [...]' lines for a flat folder\n"
      "  --synsets FILE         pack: '<wnid> <names>' lines fixing the class index of each wnid (tree)\n"
      "  --size S, --resize R   pack: CenterCrop(S) after Resize(R) (default S 224, R round(S / 0.875))\n"
      "  --per-class K          pack: only the first K images (sorted) of each class folder: a train subset\n"
      "  --out FILE.h5          pack: the packed set (written as FILE.h5.part, renamed when complete)\n"
      "  --threads N            torch threads per rank (default: SLURM_CPUS_PER_TASK, OMP_NUM_THREADS, or\n"
      "                         the node's cores divided by its ranks)\n"
      "  --help                 this text\n"
      "exit codes: 0 ok, 2 bad input (config, files), 1 internal error\n";
  return u;
}

Args parse_args(int argc, char** argv) {
  Args a;
  if (argc < 2) throw InputError("no command given; expected one of eval, synth, quantize, run, sweep, report, pack, inspect (dsgq --help lists them)");
  a.command = argv[1];
  if (a.command == "--help" || a.command == "-h" || a.command == "help") {
    a.command = "help";
    return a;
  }
  bool known = false;
  for (const auto& c : kCommands) {
    if (a.command != c.name) continue;
    known = true;
    if (!c.available)
      throw InputError("command " + quote_value(a.command) + " is not available in dsgq " + kVersion +
                       "; available: eval, synth, quantize, run, sweep, report, pack, inspect");
  }
  if (!known) throw InputError("unknown command " + quote_value(a.command) + "; expected one of eval, synth, quantize, run, sweep, report, pack, inspect (dsgq --help)");

  auto value = [&](int& i, const std::string& opt) -> std::string {
    if (i + 1 >= argc) throw InputError("option " + opt + " needs a value");
    return argv[++i];
  };
  for (int i = 2; i < argc; ++i) {
    std::string opt = argv[i];
    std::string inline_value;
    bool has_inline = false;
    if (opt.rfind("--", 0) == 0 && opt.find('=') != std::string::npos) {
      inline_value = opt.substr(opt.find('=') + 1);
      opt = opt.substr(0, opt.find('='));
      has_inline = true;
    }
    auto val = [&]() { return has_inline ? inline_value : value(i, opt); };
    if (opt == "--config") {
      a.common.config_path = val();
    } else if (opt == "--set") {
      a.common.overrides.push_back(val());
    } else if (opt == "--dry-run") {
      a.common.dry_run = true;
    } else if (opt == "--force") {
      a.common.force = true;
    } else if (opt == "--threads") {
      const std::string v = val();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 1 || n > 4096)
        throw InputError("option --threads = " + quote_value(v) + " is not a thread count; expected an integer 1..4096");
      a.common.threads = static_cast<int>(n);
    } else if (opt == "--list" && a.command == "sweep") {
      a.list = true;
    } else if (opt == "--shard" && a.command == "sweep") {
      const std::string v = val();
      int i = -1, n = 0;
      char tail = 0;
      if (std::sscanf(v.c_str(), "%d/%d%c", &i, &n, &tail) != 2 || n < 1 || i < 0 || i >= n)
        throw InputError("option --shard = " + quote_value(v) + " is not a shard; expected I/N with 0 <= I < N (e.g. "
                         "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)");
      a.shard = i;
      a.shards = n;
    } else if (opt == "--only" && a.command == "sweep") {
      if (has_inline) a.only.push_back(inline_value);
      while (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) a.only.push_back(argv[++i]);
      if (a.only.empty()) throw InputError("option --only needs at least one point key (dsgq sweep --list prints them)");
    } else if (a.command == "pack" && (opt == "--images" || opt == "--labels" || opt == "--synsets" || opt == "--out")) {
      const std::string v = val();
      (opt == "--images" ? a.pack.images : opt == "--labels" ? a.pack.labels : opt == "--synsets" ? a.pack.synsets : a.pack.out) = v;
    } else if (a.command == "pack" && (opt == "--size" || opt == "--resize" || opt == "--per-class")) {
      const std::string v = val();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 1)
        throw InputError("option " + opt + " = " + quote_value(v) + " is not a size; expected a positive integer (pixels)");
      (opt == "--size" ? a.pack.size : opt == "--resize" ? a.pack.resize : a.pack.per_class) = n;
    } else if (opt == "--help" || opt == "-h") {
      a.command = "help";
      return a;
    } else if (opt.rfind("-", 0) == 0) {
      throw InputError("unknown option " + quote_value(opt) + " for 'dsgq " + a.command +
                       "'; known: " +
                       (a.command == "pack" ? std::string("--images, --labels, --synsets, --size, --resize, --per-class, --out, --force, --dry-run, --help")
                                            : std::string("--config, --set, --dry-run, --force, --threads, --help")) +
                       (a.command == "sweep" ? ", --list, --only, --shard" : ""));
    } else {
      a.positional.push_back(opt);
    }
  }
  a.pack.force = a.common.force;
  if (a.command == "pack" && !a.common.config_path.empty())
    throw InputError("dsgq pack takes no --config; expected --images DIR --out FILE.h5 [--labels FILE] [--size S]");
  if (a.command == "inspect" && a.positional.size() != 1)
    throw InputError("dsgq inspect takes exactly one FILE; got " + std::to_string(a.positional.size()));
  if (a.command == "report" && a.positional.size() != 1)
    throw InputError("dsgq report takes exactly one RUNS_DIR (an output.dir); got " + std::to_string(a.positional.size()));
  if (a.command != "inspect" && a.command != "report" && !a.positional.empty())
    throw InputError("unexpected argument " + quote_value(a.positional[0]) + " for 'dsgq " + a.command +
                     "'; expected options only (--config FILE)");
  return a;
}

}  // namespace dsgq::apps
