#include "apps/cli.hpp"

#include <cstdio>
#include <cstdlib>

#include "apps/commands.hpp"
#include "core/error.hpp"
#include "dsgq/version.hpp"

namespace dsgq::apps {
namespace {

// One row per option: the commands it belongs to ("" = every command), whether it takes a value, its help line.
struct Option {
  const char* name;
  const char* scope;  // "", "sweep" or "pack"
  bool takes_value;
  void (*apply)(Args& a, const std::string& opt, const std::string& value);
  const char* help;
};

int64_t positive(const std::string& opt, const std::string& v, int64_t max, const char* what) {
  char* end = nullptr;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < 1 || n > max)
    throw InputError("option " + opt + " = " + quote_value(v) + " is not " + what);
  return n;
}

void set_shard(Args& a, const std::string&, const std::string& v) {
  int i = -1, n = 0;
  char tail = 0;
  if (std::sscanf(v.c_str(), "%d/%d%c", &i, &n, &tail) != 2 || n < 1 || i < 0 || i >= n)
    throw InputError("option --shard = " + quote_value(v) +
                     " is not a shard; expected I/N with 0 <= I < N (e.g. "
                     "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)");
  a.shard = i;
  a.shards = n;
}

constexpr int64_t kMaxInt = 1LL << 40;
const Option kOptions[] = {
    {"--config", "", true, [](Args& a, auto&, auto& v) { a.common.config_path = v; },
     "run configuration (TOML); without it the embedded default (resnet20, CIFAR-10)"},
    {"--set", "", true, [](Args& a, auto&, auto& v) { a.common.overrides.push_back(v); },
     "SECTION.KEY=VAL: override one config key (repeatable), e.g. --set eval.n_images=1000"},
    {"--dry-run", "", false, [](Args& a, auto&, auto&) { a.common.dry_run = true; },
     "validate everything, print the resolved config, exit"},
    {"--force", "", false, [](Args& a, auto&, auto&) { a.common.force = a.pack.force = true; },
     "redo finished work (overwrite the result record)"},
    {"--threads", "", true,
     [](Args& a, auto& o, auto& v) {
       a.common.threads = static_cast<int>(positive(o, v, 4096, "a thread count; expected an integer 1..4096"));
     },
     "N: torch threads per rank (default: SLURM_CPUS_PER_TASK, OMP_NUM_THREADS, or the node's cores / ranks)"},
    {"--list", "sweep", false, [](Args& a, auto&, auto&) { a.list = true; },
     "print every point, its key and state (done/pending), exit"},
    {"--only", "sweep", false, nullptr, "KEY...: only these points (keys as --list prints them)"},
    {"--shard", "sweep", true, set_shard,
     "I/N: only shard I of N (points grouped by calibration set, set g -> shard g % N)"},
    {"--images", "pack", true, [](Args& a, auto&, auto& v) { a.pack.images = v; },
     "DIR: <wnid>/<image> tree, or a flat folder with --labels"},
    {"--labels", "pack", true, [](Args& a, auto&, auto& v) { a.pack.labels = v; },
     "FILE: '<file> <class index> [...]' lines for a flat folder"},
    {"--synsets", "pack", true, [](Args& a, auto&, auto& v) { a.pack.synsets = v; },
     "FILE: '<wnid> <names>' lines fixing the class index of each wnid (tree)"},
    {"--size", "pack", true,
     [](Args& a, auto& o, auto& v) {
       a.pack.size = positive(o, v, kMaxInt, "a size; expected a positive integer (pixels)");
     },
     "S: CenterCrop(S) (default 224)"},
    {"--resize", "pack", true,
     [](Args& a, auto& o, auto& v) {
       a.pack.resize = positive(o, v, kMaxInt, "a size; expected a positive integer (pixels)");
     },
     "R: Resize(R) before the crop (default round(S / 0.875))"},
    {"--per-class", "pack", true,
     [](Args& a, auto& o, auto& v) {
       a.pack.per_class = positive(o, v, kMaxInt, "a size; expected a positive integer (pixels)");
     },
     "K: only the first K images (sorted) of each class folder: a train subset"},
    {"--out", "pack", true, [](Args& a, auto&, auto& v) { a.pack.out = v; },
     "FILE.h5: the packed set (written as FILE.h5.part, renamed when complete)"},
    {"--help", "", false, [](Args& a, auto&, auto&) { a.command = "help"; }, "this text"},
};

bool in_scope(const Option& o, const std::string& command) {
  return std::string(o.scope).empty() || command == o.scope;
}

std::string known_options(const std::string& command) {
  std::string out;
  for (const auto& o : kOptions)
    if (in_scope(o, command) && !(command == "pack" && std::string(o.name) == "--config") &&
        !(command == "pack" && (std::string(o.name) == "--set" || std::string(o.name) == "--threads")))
      out += (out.empty() ? "" : ", ") + std::string(o.name);
  return out;
}

void check_positionals(const Args& a) {
  if (a.command == "pack" && !a.common.config_path.empty())
    throw InputError("dsgq pack takes no --config; expected --images DIR --out FILE.h5 [--labels FILE] [--size S]");
  const bool takes_one = a.command == "inspect" || a.command == "report";
  if (takes_one && a.positional.size() != 1)
    throw InputError("dsgq " + a.command + " takes exactly one " +
                     (a.command == "inspect" ? std::string("FILE") : std::string("RUNS_DIR (an output.dir)")) +
                     "; got " + std::to_string(a.positional.size()));
  if (!takes_one && !a.positional.empty())
    throw InputError("unexpected argument " + quote_value(a.positional[0]) + " for 'dsgq " + a.command +
                     "'; expected options only (--config FILE)");
}

}  // namespace

std::string usage() {
  std::string u = std::string("dsgq ") + kVersion +
                  " - data-free quantization (DSG/ZeroQ synthesis, calibration, AdaRound) over MPI\n"
                  "usage: [mpirun -np N | srun] dsgq COMMAND [options]\n\ncommands:\n";
  for (const auto& c : commands()) u += std::string("  ") + c.synopsis + "\n";
  u += "\noptions (sweep: and pack: only for that command):\n";
  for (const auto& o : kOptions) {
    std::string name = std::string(o.scope).empty() ? o.name : std::string(o.scope) + ": " + o.name;
    u += "  " + name + std::string(name.size() < 20 ? 20 - name.size() : 1, ' ') + o.help + "\n";
  }
  u += "exit codes: 0 ok, 2 bad input (config, files), 1 internal error\n";
  return u;
}

Args parse_args(int argc, char** argv) {
  Args a;
  if (argc < 2) throw InputError("no command given; expected one of " + command_names() + " (dsgq --help lists them)");
  a.command = argv[1];
  if (a.command == "--help" || a.command == "-h") a.command = "help";
  if (!find_command(a.command))
    throw InputError("unknown command " + quote_value(a.command) + "; expected one of " + command_names() +
                     " (dsgq --help)");
  for (int i = 2; i < argc && a.command != "help"; ++i) {
    std::string opt = argv[i], value;
    const size_t eq = opt.rfind("--", 0) == 0 ? opt.find('=') : std::string::npos;
    const bool has_inline = eq != std::string::npos;
    if (has_inline) value = opt.substr(eq + 1), opt = opt.substr(0, eq);
    if (opt == "-h") opt = "--help";
    const Option* o = nullptr;
    for (const auto& row : kOptions)
      if (opt == row.name && in_scope(row, a.command)) o = &row;
    if (!o && opt.rfind("-", 0) == 0)
      throw InputError("unknown option " + quote_value(opt) + " for 'dsgq " + a.command +
                       "'; known: " + known_options(a.command));
    if (!o) {
      a.positional.push_back(opt);
    } else if (opt == "--only") {
      if (has_inline) a.only.push_back(value);
      while (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) a.only.push_back(argv[++i]);
      if (a.only.empty())
        throw InputError("option --only needs at least one point key (dsgq sweep --list prints them)");
    } else {
      if (o->takes_value && !has_inline) {
        if (i + 1 >= argc) throw InputError("option " + opt + " needs a value");
        value = argv[++i];
      }
      o->apply(a, opt, value);
    }
  }
  if (a.command != "help") check_positionals(a);
  return a;
}

}  // namespace dsgq::apps
