// src/config/run_config.cpp: reading run files and --set overrides, their messages, resolved.toml, the field
// tables' roles and the configuration reference.
#include <gtest/gtest.h>

#include <cstdint>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "config/run_config.hpp"
#include "core/error.hpp"
#include "test_util.hpp"

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

// A config value as "type value" text (doubles to 17 digits), for comparisons with readable failures.
std::string show(const dsgq::config::Value& v) {
  std::ostringstream os;
  os << std::setprecision(17);
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>)
          os << "bool " << (x ? "true" : "false");
        else if constexpr (std::is_same_v<T, int64_t>)
          os << "int " << x;
        else if constexpr (std::is_same_v<T, double>)
          os << "float " << x;
        else
          os << "string '" << x << "'";
      },
      v);
  return os.str();
}

// Every key's value in `cfg`, as "section.key" -> show(value), in table order.
std::vector<std::pair<std::string, std::string>> all_values(const dsgq::config::RunConfig& cfg) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : dsgq::config::fields_with(cfg, 0)) out.emplace_back(f.section + "." + f.key, show(f.value));
  return out;
}

// One row of the configuration reference's tables.
struct RefRow {
  std::string section, key, type, default_text, range;
};

// The rows of config_reference(): "## [section]" headings, then "| `key` | type | `default` | range | meaning |".
std::vector<RefRow> reference_rows() {
  std::vector<RefRow> rows;
  std::istringstream in(dsgq::config::config_reference());
  std::string line, section;
  auto unquote = [](std::string s) {  // `x` -> x
    return s.size() >= 2 && s.front() == '`' && s.back() == '`' ? s.substr(1, s.size() - 2) : s;
  };
  while (std::getline(in, line)) {
    if (line.rfind("## [", 0) == 0) {
      section = line.substr(4, line.find(']') - 4);
    } else if (line.rfind("| `", 0) == 0) {
      std::vector<std::string> cells;  // " | " never occurs inside a cell: a '|' there is written "\|"
      size_t start = 2;
      for (size_t bar; (bar = line.find(" | ", start)) != std::string::npos && cells.size() < 4; start = bar + 3)
        cells.push_back(line.substr(start, bar - start));
      if (cells.size() < 4) continue;
      rows.push_back({section, unquote(cells[0]), cells[1], unquote(cells[2]), cells[3]});
    }
  }
  return rows;
}

std::pair<std::string, std::string> split_range(const std::string& range) {  // "lo..hi"
  const size_t dots = range.find("..");
  return {range.substr(0, dots), range.substr(dots + 2)};
}

// A value other than the default for the reference row `r`: the --set text and the value it must read back as.
struct Setting {
  std::string text;
  dsgq::config::Value value;
};
Setting non_default(const RefRow& r) {
  const std::string dotted = r.section + "." + r.key;
  if (r.type == "integer") {
    const auto [lo, hi] = split_range(r.range);
    const int64_t def = std::stoll(r.default_text);
    const int64_t v = def + 1 <= std::stoll(hi) ? def + 1 : std::stoll(lo);
    return {std::to_string(v), v};
  }
  if (r.type == "float") {
    const auto [lo, hi] = split_range(r.range);
    for (double v : {0.5, 0.25, 0.75, 1.5, 3.0}) {  // exact in binary and in TOML text
      if (v >= std::stod(lo) && v <= std::stod(hi) && v != std::stod(r.default_text)) {
        std::ostringstream os;
        os << v;
        return {os.str(), v};
      }
    }
  }
  if (r.type == "boolean") return {r.default_text == "true" ? "false" : "true", r.default_text != "true"};
  if (r.type == "choice") {  // range: "a", "b", ...; auto is resolved when read, so it never reads back
    std::istringstream names(r.range);
    for (std::string n; std::getline(names, n, ',');) {
      n = n.substr(n.find('"') + 1);
      n = n.substr(0, n.find('"'));
      if ("\"" + n + "\"" != r.default_text && n != "auto") return {"\"" + n + "\"", n};
    }
  }
  // Strings and paths, with the values the reader accepts where it checks them.
  static const std::map<std::string, std::string> special = {{"model.arch", "resnet56"}, {"runtime.device", "cuda:1"}};
  const auto it = special.find(dotted);
  const std::string v = it != special.end() ? it->second : r.type == "path" ? "/tmp/dsgq_" + r.key : "x_" + r.key;
  return {"\"" + v + "\"", v};
}

}  // namespace

TEST(RunConfig, DefaultsAreTheEmbeddedQuickstart) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  const auto c = parse_run_config("", "(defaults)", {});
  EXPECT_EQ(c.model.arch, "resnet20");
  EXPECT_EQ(c.eval.data, "/d/cifar10/test_batch.bin");
  EXPECT_EQ(c.eval.batch, 500);
  EXPECT_EQ(c.runtime.device, "cpu");
}

TEST(RunConfig, ReadsEveryKeyAndAppliesOverrides) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
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
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  EXPECT_EQ(error_of("[eval]\nbatchsize = 3\n"),
            "configs/t.toml [eval]: batchsize is an unknown key; known keys in [eval]: batch, data, n_images");
}

TEST(RunConfig, UnknownSectionListsKnownSections) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  EXPECT_EQ(
      error_of("[evall]\nbatch = 3\n"),
      "configs/t.toml: [evall] is an unknown section; known sections: model, synth, quant, eval, output, runtime");
}

TEST(RunConfig, WrongTypeNamesKeyValueAndExpectation) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  EXPECT_EQ(error_of("[eval]\nbatch = \"big\"\n"),
            "configs/t.toml [eval]: batch = 'big' is a string; expected an integer 1..1048576");
  EXPECT_EQ(error_of("[model]\narch = 20\n"), "configs/t.toml [model]: arch = '20' is an integer; expected a string");
}

TEST(RunConfig, OutOfRangeAndBadEnum) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  EXPECT_EQ(error_of("[eval]\nbatch = 0\n"), "configs/t.toml [eval]: batch = '0' is out of range; expected 1..1048576");
  EXPECT_EQ(error_of("[runtime]\ndevice = \"gpu\"\n"),
            "configs/t.toml [runtime]: device = 'gpu' is not a device; expected cpu, cuda or cuda:N");
  EXPECT_EQ(error_of("[model]\ndataset = \"mnist\"\n"),
            "configs/t.toml [model]: dataset = 'mnist' is not allowed; expected one of , cifar10, imagenet");
  EXPECT_EQ(error_of("[synth]\nmethod = \"genie\"\nclip = true\n"),
            "configs/t.toml [synth]: clip = true applies to the pixel-optimising methods; method is 'genie', "
            "expected zeroq, dsg or deepinversion");
  EXPECT_EQ(error_of("[quant]\nprotocol = \"qdrop\"\n[quant.adaround]\ngram = true\n"),
            "configs/t.toml [quant.adaround]: gram = true applies to protocol adaround (layer by layer, activations "
            "in floating point); protocol is 'qdrop', expected adaround or gram = false");
  EXPECT_EQ(error_of("[synth]\nmethod = \"zeroq\"\ncrop = 4\n"),
            "configs/t.toml [synth]: crop = 4 applies to method deepinversion; method is 'zeroq', expected "
            "deepinversion or crop = 0");
  EXPECT_EQ(error_of("[synth]\ncrop = -1\n"), "configs/t.toml [synth]: crop = '-1' is out of range; expected 0..1024");
  EXPECT_EQ(error_of("[synth]\nzoom = 0.5\ncrop = 4\n"),
            "configs/t.toml [synth]: zoom = 0.5 and crop = 4 are two augmentations of the same step; expected one of "
            "them, the other 0");
  EXPECT_EQ(error_of("[synth]\nmethod = \"genie\"\nzoom = 0.5\n"),
            "configs/t.toml [synth]: zoom = 0.5 applies to method deepinversion; method is 'genie', expected "
            "deepinversion or zoom = 0");
  EXPECT_EQ(error_of("[synth]\nzoom = 1.5\n"), "configs/t.toml [synth]: zoom = '1.5' is out of range; expected 0..1");
  EXPECT_EQ(error_of("[synth]\nmethod = \"dsg\"\nlowres_iters = 100\n"),
            "configs/t.toml [synth]: lowres_iters = 100 applies to method deepinversion; method is 'dsg', expected "
            "deepinversion or lowres_iters = 0");
  EXPECT_EQ(error_of("[synth]\nmethod = \"genie\"\nmix = 0.5\n"),
            "configs/t.toml [synth]: mix = 0.5 applies to method deepinversion; method is 'genie', expected "
            "deepinversion or mix = 0");
  EXPECT_EQ(error_of("[synth]\nmix = 1.5\n"), "configs/t.toml [synth]: mix = '1.5' is out of range; expected 0..1");
  EXPECT_EQ(error_of("[synth]\nsoft_target = 0.95\nmix = 0.5\n"),
            "configs/t.toml [synth]: soft_target = 0.95 and mix = 0.5 are two class terms; expected one of them, the "
            "other 0");
  EXPECT_EQ(error_of("[synth]\nmethod = \"zeroq\"\nsoft_target = 0.95\n"),
            "configs/t.toml [synth]: soft_target = 0.95 applies to method deepinversion; method is 'zeroq', expected "
            "deepinversion or soft_target = 0");
  EXPECT_EQ(error_of("[synth]\nsoft_target = 2\n"),
            "configs/t.toml [synth]: soft_target = '2' is out of range; expected 0..1");
  EXPECT_EQ(error_of("[synth]\nmethod = \"dsg\"\nstem_l1 = 100\n"),
            "configs/t.toml [synth]: stem_l1 = 100 applies to method deepinversion; method is 'dsg', expected "
            "deepinversion or stem_l1 = 0");
  EXPECT_EQ(error_of("[synth]\nmethod = \"real\"\nreal_pick = \"random\"\n"),
            "configs/t.toml [synth]: real_pick = 'random' is not allowed; expected one of first, seeded");
  EXPECT_EQ(error_of("[synth]\ninit = \"leaves\"\n"),
            "configs/t.toml [synth]: init = 'leaves' is not allowed; expected one of preset, gaussian, diverse, "
            "dead_leaves");
  EXPECT_EQ(error_of("[synth]\nlowres_iters = -1\n"),
            "configs/t.toml [synth]: lowres_iters = '-1' is out of range; expected 0..1000000");
}

TEST(RunConfig, OverrideErrorsNameTheOverride) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  EXPECT_EQ(error_of("", {"eval.batch=abc"}),
            "--set eval.batch=abc: batch = 'abc' is a string; expected an integer 1..1048576");
  EXPECT_EQ(error_of("", {"evalbatch=3"}), "--set evalbatch=3: expected section.key=value (e.g. --set eval.batch=256)");
  EXPECT_EQ(error_of("", {"eval.bogus=1"}).rfind("--set eval.bogus=1: bogus is an unknown key", 0), 0u);
}

TEST(RunConfig, SyntaxErrorNamesLineAndColumn) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  const std::string e = error_of("[eval]\nbatch = = 3\n");
  EXPECT_EQ(e.rfind("configs/t.toml:2:", 0), 0u) << e;
  EXPECT_NE(e.find("TOML syntax error"), std::string::npos) << e;
}

// The reference lists exactly the keys the reader knows, in table order; each one, set to a value other than its
// default with --set, reads back as that value, leaves every other key at its default, and survives
// to_toml -> parse_run_config unchanged.
TEST(RunConfig, EveryReferenceKeyOverridesAndRoundTripsThroughToml) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  const std::vector<RefRow> rows = reference_rows();
  const auto defaults = all_values(parse_run_config("", "(defaults)", {}));
  ASSERT_EQ(rows.size(), defaults.size());
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].section + "." + rows[i].key, defaults[i].first);

  std::set<std::string> types;
  for (size_t i = 0; i < rows.size(); ++i) {
    const RefRow& r = rows[i];
    const std::string dotted = r.section + "." + r.key;
    const Setting s = non_default(r);
    const std::string set = dotted + "=" + s.text;
    SCOPED_TRACE(set + " (" + r.type + ")");
    ASSERT_NE(show(s.value), defaults[i].second) << "no non-default value found";
    types.insert(r.type);

    const auto cfg = parse_run_config("", "(defaults)", {set});
    const auto got = all_values(cfg);
    ASSERT_EQ(got.size(), defaults.size());
    for (size_t j = 0; j < got.size(); ++j) {
      // Only the key itself changes (but the protocol also picks the act_observer that auto resolves to, and the
      // method, iters and lowres_iters pick deepinversion's default schedule or leave it).
      static const std::set<std::string> schedule = {"synth.method", "synth.iters", "synth.lowres_iters", "synth.lr"};
      if (j == i) {
        EXPECT_EQ(got[j].second, show(s.value));
      } else if ((dotted != "quant.protocol" || got[j].first != "quant.act_observer") &&
                 !(schedule.count(dotted) && schedule.count(got[j].first))) {
        EXPECT_EQ(got[j], defaults[j]);
      }
    }
    const auto back = all_values(parse_run_config(dsgq::config::to_toml(cfg), "resolved.toml", {}));
    EXPECT_EQ(back, got);
  }
  EXPECT_EQ(types, (std::set<std::string>{"boolean", "choice", "float", "integer", "path", "string"}));
}

// A few keys of each type, checked on the structs themselves, through --set and back through resolved.toml.
TEST(RunConfig, OverridesOfEachTypeRoundTripThroughToml) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  using namespace dsgq::config;
  const auto c = parse_run_config("[quant.adaround]\nreg = 0.5\n", "configs/t.toml",
                                  {"synth.iters=17", "quant.adaround.iters=9", "quant.first_last_bits=0",  // integers
                                   "synth.lr=0.25", "quant.adaround.warmup=0.5", "synth.slack_quantile=0.75",  // floats
                                   "synth.lse=false", "quant.adaround.enabled=false",                        // booleans
                                   "synth.method=zeroq", "synth.stats=\"batch\"", "model.dataset=imagenet",  // choices
                                   "quant.act_observer=percentile", "quant.protocol=adaround", "model.weights=/w.pt",
                                   "quant.calib_data=\"${DSGQ_DATA}/c.h5\"", "runtime.device=cuda:2"});  // text
  for (const RunConfig& r : {c, parse_run_config(to_toml(c), "resolved.toml", {})}) {
    EXPECT_EQ(r.synth.iters, 17);
    EXPECT_EQ(r.quant.adaround.iters, 9);
    EXPECT_EQ(r.quant.first_last_bits, 0);
    EXPECT_EQ(r.synth.lr, 0.25);  // exact: 0.25 is a binary fraction, written and read back as such
    EXPECT_EQ(r.quant.adaround.warmup, 0.5);
    EXPECT_EQ(r.synth.slack_quantile, 0.75);
    EXPECT_EQ(r.quant.adaround.reg, 0.5);
    EXPECT_FALSE(r.synth.lse);
    EXPECT_FALSE(r.quant.adaround.enabled);
    EXPECT_EQ(r.synth.method, SynthMethod::zeroq);
    EXPECT_EQ(r.synth.stats, BnStats::batch);
    EXPECT_EQ(r.model.dataset, Dataset::imagenet);
    EXPECT_EQ(r.quant.act_observer, Observer::percentile);  // an explicit observer is kept under adaround
    EXPECT_EQ(r.quant.protocol, Protocol::adaround);
    EXPECT_EQ(r.model.weights, "/w.pt");
    EXPECT_EQ(r.quant.calib_data, "/d/c.h5");
    EXPECT_EQ(r.runtime.device, "cuda:2");
    // Untouched keys keep their defaults.
    EXPECT_EQ(r.synth.batch, 64);
    EXPECT_EQ(r.quant.adaround.beta_start, 20.0);
  }
}

// The adaround variant (the point's "adaround" object and its key's hash): first_last_bits, then [quant.adaround]
// in table order.
TEST(RunConfig, AdaRoundVariantFieldsInOrder) {
  using namespace dsgq::config;
  RunConfig cfg;
  cfg.quant.first_last_bits = 6;
  cfg.quant.adaround.iters = 9;
  cfg.quant.adaround.enabled = false;
  const std::vector<FieldValue> f = fields_with(cfg, kAdaRoundVariant);
  std::vector<std::string> keys;
  for (const auto& v : f) keys.push_back(v.section + "." + v.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"quant.first_last_bits", "quant.adaround.enabled", "quant.adaround.iters",
                                            "quant.adaround.batch", "quant.adaround.reg", "quant.adaround.beta_start",
                                            "quant.adaround.beta_end", "quant.adaround.warmup", "quant.adaround.lr"}));
  ASSERT_EQ(f.size(), 9u);
  EXPECT_EQ(show(f[0].value), "int 6");
  EXPECT_EQ(show(f[1].value), "bool false");
  EXPECT_EQ(show(f[2].value), "int 9");
  EXPECT_EQ(f[0].point, "first_last_bits");
}

// deepinversion with neither iters nor lowres_iters given runs 400 half-size + 100 full-size steps; either key given
// (or another method) keeps the plain defaults, so a set of 500 full-size steps keeps its identity; the schedule
// also takes lr 0.08 unless lr is given.
TEST(RunConfig, DeepInversionDefaultScheduleOnlyWhenNeitherKeyIsGiven) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  using dsgq::config::fields_with;
  using dsgq::config::kSynthIdentity;
  const auto identity = [](const dsgq::config::RunConfig& c) {
    std::string out;
    for (const auto& f : fields_with(c, kSynthIdentity)) out += f.section + "." + f.key + "=" + show(f.value) + "\n";
    return out;
  };
  const auto steps = [](const dsgq::config::RunConfig& c) {
    return std::make_pair(c.synth.lowres_iters, c.synth.iters);
  };
  const auto lr = [](const std::vector<std::string>& sets) { return parse_run_config("", "t.toml", sets).synth.lr; };
  const auto def = parse_run_config("", "t.toml", {});
  EXPECT_EQ(def.synth.method, dsgq::config::SynthMethod::deepinversion);
  EXPECT_EQ(steps(def), std::make_pair(int64_t{400}, int64_t{100}));
  EXPECT_EQ(steps(parse_run_config("[synth]\nmethod = \"deepinversion\"\n", "t.toml", {})), steps(def));
  const auto full = parse_run_config("", "t.toml", {"synth.iters=500"});
  EXPECT_EQ(steps(full), std::make_pair(int64_t{0}, int64_t{500}));
  EXPECT_EQ(steps(parse_run_config("[synth]\niters = 200\n", "t.toml", {})), std::make_pair(int64_t{0}, int64_t{200}));
  EXPECT_EQ(steps(parse_run_config("", "t.toml", {"synth.lowres_iters=300"})),
            std::make_pair(int64_t{300}, int64_t{500}));
  EXPECT_EQ(steps(parse_run_config("", "t.toml", {"synth.lowres_iters=0"})), std::make_pair(int64_t{0}, int64_t{500}));
  EXPECT_EQ(steps(parse_run_config("", "t.toml", {"synth.method=dsg"})), std::make_pair(int64_t{0}, int64_t{500}));
  EXPECT_EQ(steps(parse_run_config("", "t.toml", {"synth.method=genie"})), std::make_pair(int64_t{0}, int64_t{500}));
  // The schedule's lr 0.08 unless lr is given; outside the schedule 0 (the method's own, deepinversion 0.1).
  EXPECT_EQ(lr({}), 0.08);
  EXPECT_EQ(lr({"synth.lr=0.2"}), 0.2);
  EXPECT_EQ(steps(parse_run_config("", "t.toml", {"synth.lr=0.2"})), steps(def));
  EXPECT_EQ(lr({"synth.iters=500"}), 0.0);
  EXPECT_EQ(lr({"synth.lowres_iters=400"}), 0.0);
  EXPECT_EQ(lr({"synth.method=dsg"}), 0.0);
  // The identity holds the steps run: the default schedule's differs from 500 full-size steps', which is the
  // identity such sets had before the schedule existed (iters = 500, lowres_iters left out at 0).
  EXPECT_NE(identity(def).find("synth.lowres_iters=int 400"), std::string::npos) << identity(def);
  EXPECT_NE(identity(def).find("synth.iters=int 100"), std::string::npos) << identity(def);
  EXPECT_NE(identity(def).find("synth.lr=float 0.08"), std::string::npos) << identity(def);
  EXPECT_EQ(identity(full).find("lowres_iters"), std::string::npos) << identity(full);
  EXPECT_NE(identity(full).find("synth.iters=int 500"), std::string::npos) << identity(full);
  // Once resolved, resolved.toml reads back to the same steps and lr.
  EXPECT_EQ(steps(parse_run_config(dsgq::config::to_toml(def), "resolved.toml", {})), steps(def));
  EXPECT_EQ(parse_run_config(dsgq::config::to_toml(def), "resolved.toml", {}).synth.lr, 0.08);
  EXPECT_EQ(steps(parse_run_config(dsgq::config::to_toml(full), "resolved.toml", {})), steps(full));
}

// act_observer = "auto" is resolved when the config is read: mse under the adaround protocol, ema under zeroq;
// resolved.toml holds the resolved name.
TEST(RunConfig, AutoActObserverFollowsTheProtocol) {
  const dsgq::test::ScopedEnv data("DSGQ_DATA", "/d");  // ${DSGQ_DATA} defaults expand without the real data folder
  using dsgq::config::Observer;
  const auto ada = parse_run_config("[quant]\nprotocol = \"adaround\"\nact_observer = \"auto\"\n", "t.toml", {});
  EXPECT_EQ(ada.quant.act_observer, Observer::mse);
  const auto zq = parse_run_config("[quant]\nprotocol = \"zeroq\"\nact_observer = \"auto\"\n", "t.toml", {});
  EXPECT_EQ(zq.quant.act_observer, Observer::ema);
  EXPECT_EQ(parse_run_config("", "t.toml", {"quant.act_observer=auto", "quant.protocol=adaround"}).quant.act_observer,
            Observer::mse);
  EXPECT_EQ(parse_run_config("", "t.toml", {"quant.act_observer=auto"}).quant.act_observer,
            Observer::ema);  // zeroq default
  EXPECT_EQ(dsgq::config::to_toml(ada).find("act_observer = 'auto'"), std::string::npos) << dsgq::config::to_toml(ada);
  EXPECT_NE(dsgq::config::to_toml(ada).find("act_observer = 'mse'"), std::string::npos) << dsgq::config::to_toml(ada);
  EXPECT_EQ(parse_run_config(dsgq::config::to_toml(ada), "resolved.toml", {"quant.protocol=zeroq"}).quant.act_observer,
            Observer::mse);  // once resolved, a later protocol change no longer moves it
}
