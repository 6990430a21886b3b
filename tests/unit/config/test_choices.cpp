// src/config/choices.hpp: every configuration enum's name table (name, parse_choice, choice_names).
#include <gtest/gtest.h>

#include <cctype>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "config/choices.hpp"

using namespace dsgq::config;

namespace {

template <class E>
class Choices : public ::testing::Test {};

using ChoiceTypes = ::testing::Types<Dataset, SynthMethod, Preset, BnStats, Protocol, Observer>;

struct ChoiceTypeNames {
  template <class E>
  static std::string GetName(int) {
    if (std::is_same_v<E, Dataset>) return "Dataset";
    if (std::is_same_v<E, SynthMethod>) return "SynthMethod";
    if (std::is_same_v<E, Preset>) return "Preset";
    if (std::is_same_v<E, BnStats>) return "BnStats";
    if (std::is_same_v<E, Protocol>) return "Protocol";
    if (std::is_same_v<E, Observer>) return "Observer";
    return "unknown";
  }
};

}  // namespace

TYPED_TEST_SUITE(Choices, ChoiceTypes, ChoiceTypeNames);

// name() and parse_choice() are inverse over choice_names(), which lists the table's rows in order, each once.
TYPED_TEST(Choices, NameAndParseRoundTripOverChoiceNames) {
  using E = TypeParam;
  const std::vector<std::string> names = choice_names<E>();
  ASSERT_EQ(names.size(), ChoiceTable<E>::rows.size());
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size()) << "duplicate name";
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& [value, row_name] = ChoiceTable<E>::rows[i];
    EXPECT_EQ(names[i], row_name);
    const std::optional<E> parsed = parse_choice<E>(names[i]);
    ASSERT_TRUE(parsed.has_value()) << "'" << names[i] << "'";
    EXPECT_EQ(*parsed, value) << "'" << names[i] << "'";
    EXPECT_EQ(name(*parsed), names[i]);
    EXPECT_EQ(parse_choice<E>(name(value)), value) << "'" << names[i] << "'";
  }
}

// Unknown names (and near misses: other case, padding) are nullopt, never a default.
TYPED_TEST(Choices, UnknownNameIsNullopt) {
  using E = TypeParam;
  EXPECT_FALSE(parse_choice<E>("no_such_choice").has_value());
  for (const std::string& n : choice_names<E>()) {
    EXPECT_FALSE(parse_choice<E>(n + " ").has_value()) << "'" << n << " '";
    EXPECT_FALSE(parse_choice<E>(" " + n).has_value()) << "' " << n << "'";
    std::string upper = n;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (upper != n) {
      EXPECT_FALSE(parse_choice<E>(upper).has_value()) << "'" << upper << "'";
    }
  }
  EXPECT_EQ(name(static_cast<E>(99)), "?");  // a value outside the table
}

// The spellings config files, records and resolved.toml use (a rename breaks every stored file).
TEST(ChoiceNames, AsWrittenInConfigFiles) {
  using V = std::vector<std::string>;
  EXPECT_EQ(choice_names<Dataset>(), (V{"", "cifar10", "imagenet"}));
  EXPECT_EQ(choice_names<SynthMethod>(), (V{"dsg", "zeroq", "gaussian", "real", "deepinversion", "genie"}));
  EXPECT_EQ(choice_names<Preset>(), (V{"paper", "official", "dsgq"}));
  EXPECT_EQ(choice_names<BnStats>(), (V{"per_sample", "batch"}));
  EXPECT_EQ(choice_names<SynthInit>(), (V{"preset", "gaussian", "diverse", "dead_leaves"}));
  EXPECT_EQ(choice_names<Protocol>(), (V{"zeroq", "adaround", "qdrop"}));
  EXPECT_EQ(choice_names<Observer>(), (V{"auto", "minmax", "ema", "percentile", "mse"}));
  EXPECT_EQ(name(Dataset::from_arch), "");
  EXPECT_EQ(name(Observer::automatic), "auto");
}
