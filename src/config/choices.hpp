#pragma once
// Every configuration choice as an enum, with one name table each: parsing, `dsgq config`, resolved.toml, record
// fields and log lines all use name()/parse() below, and code downstream switches on the enum (-Werror=switch).
// Adding a choice: one enumerator and one row in its table.
#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsgq::config {

// [model] dataset: "" takes the architecture's own dataset.
enum class Dataset { from_arch, cifar10, imagenet };
// [synth] method.
enum class SynthMethod { dsg, zeroq, gaussian, real, deepinversion, genie };
// Whether the method optimises its images (dsg, zeroq, deepinversion, genie) rather than drawing or reading them.
constexpr bool optimised(SynthMethod m) {
  return m == SynthMethod::dsg || m == SynthMethod::zeroq || m == SynthMethod::deepinversion || m == SynthMethod::genie;
}
// [synth] preset: the papers' settings, the released code's (docs/method.md section 5), or dsgq's recommended
// settings (section 7.4: for deepinversion the diverse start and bn_weight 10; for every other method the paper's).
enum class Preset { paper, official, dsgq };
// [synth] stats: BN statistics per sample (the released code) or of the global batch (all-reduced over ranks).
enum class BnStats { per_sample, batch };
// [synth] init: the starting images; `automatic` ("preset") takes the method's and preset's (docs/method.md
// section 7.2).
enum class SynthInit { automatic, gaussian, diverse, dead_leaves };
// [synth] real_pick: which images of real_data a `real` set takes: the first n_images, or n_images drawn by the seed.
enum class RealPick { first, seeded };
// [runtime] collectives: how device tensors are all-reduced; `automatic` is NCCL for CUDA tensors in an NCCL build.
enum class Collectives { automatic, mpi, nccl };
// [quant] protocol.
enum class Protocol { zeroq, adaround, qdrop };
// [quant] act_observer; `automatic` is resolved when the config is read (zeroq: ema, adaround: mse).
enum class Observer { automatic, minmax, ema, percentile, mse };

template <class E>
struct ChoiceTable;  // specialised below: `static constexpr std::array<std::pair<E, const char*>, N> rows`

template <>
struct ChoiceTable<Dataset> {
  static constexpr std::array<std::pair<Dataset, const char*>, 3> rows{
      {{Dataset::from_arch, ""}, {Dataset::cifar10, "cifar10"}, {Dataset::imagenet, "imagenet"}}};
};
template <>
struct ChoiceTable<SynthMethod> {
  static constexpr std::array<std::pair<SynthMethod, const char*>, 6> rows{
      {{SynthMethod::dsg, "dsg"},
       {SynthMethod::zeroq, "zeroq"},
       {SynthMethod::gaussian, "gaussian"},
       {SynthMethod::real, "real"},
       {SynthMethod::deepinversion, "deepinversion"},
       {SynthMethod::genie, "genie"}}};
};
template <>
struct ChoiceTable<Preset> {
  static constexpr std::array<std::pair<Preset, const char*>, 3> rows{
      {{Preset::paper, "paper"}, {Preset::official, "official"}, {Preset::dsgq, "dsgq"}}};
};
template <>
struct ChoiceTable<BnStats> {
  static constexpr std::array<std::pair<BnStats, const char*>, 2> rows{
      {{BnStats::per_sample, "per_sample"}, {BnStats::batch, "batch"}}};
};
template <>
struct ChoiceTable<SynthInit> {
  static constexpr std::array<std::pair<SynthInit, const char*>, 4> rows{{{SynthInit::automatic, "preset"},
                                                                          {SynthInit::gaussian, "gaussian"},
                                                                          {SynthInit::diverse, "diverse"},
                                                                          {SynthInit::dead_leaves, "dead_leaves"}}};
};
template <>
struct ChoiceTable<RealPick> {
  static constexpr std::array<std::pair<RealPick, const char*>, 2> rows{
      {{RealPick::first, "first"}, {RealPick::seeded, "seeded"}}};
};
template <>
struct ChoiceTable<Collectives> {
  static constexpr std::array<std::pair<Collectives, const char*>, 3> rows{
      {{Collectives::automatic, "auto"}, {Collectives::mpi, "mpi"}, {Collectives::nccl, "nccl"}}};
};
template <>
struct ChoiceTable<Protocol> {
  static constexpr std::array<std::pair<Protocol, const char*>, 3> rows{
      {{Protocol::zeroq, "zeroq"}, {Protocol::adaround, "adaround"}, {Protocol::qdrop, "qdrop"}}};
};
template <>
struct ChoiceTable<Observer> {
  static constexpr std::array<std::pair<Observer, const char*>, 5> rows{{{Observer::automatic, "auto"},
                                                                         {Observer::minmax, "minmax"},
                                                                         {Observer::ema, "ema"},
                                                                         {Observer::percentile, "percentile"},
                                                                         {Observer::mse, "mse"}}};
};

// The name of a choice, as written in config files.
template <class E>
std::string name(E value) {
  for (const auto& [v, n] : ChoiceTable<E>::rows)
    if (v == value) return n;
  return "?";
}

// The choice called `text`, or nullopt.
template <class E>
std::optional<E> parse_choice(std::string_view text) {
  for (const auto& [v, n] : ChoiceTable<E>::rows)
    if (text == n) return v;
  return std::nullopt;
}

// Every name, in table order.
template <class E>
std::vector<std::string> choice_names() {
  std::vector<std::string> out;
  for (const auto& row : ChoiceTable<E>::rows) out.emplace_back(row.second);
  return out;
}

}  // namespace dsgq::config
