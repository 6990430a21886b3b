#pragma once
// Where the real data lives: $DSGQ_DATA, else ../shared/data beside the source checkout, else ../shared/data from
// the working directory.
#include <string>

namespace dsgq {

// Returns the data folder, or "" when none of the candidates exists.
std::string data_dir();

// Replaces every ${NAME} in `text` (DSGQ_DATA resolved by data_dir()). Throws InputError naming `where` and the
// variable when it is unset.
std::string expand_env(const std::string& text, const std::string& where);

}  // namespace dsgq
