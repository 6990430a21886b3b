#pragma once
// Result records (docs/formats.md section 4): one JSON object per point, written atomically.
#include <nlohmann/json_fwd.hpp>

#include <string>

namespace dsgq::io {

inline constexpr const char* kResultFormat = "dsgq-result/1";

// Pretty-printed, via a temporary name and rename (never a half-written record). Local.
void write_json_atomic(const std::string& path, const nlohmann::json& record);

// Throws InputError naming the file when it is missing or not valid JSON.
nlohmann::json read_json(const std::string& path);

// UTC "2026-11-27T05:26:36Z".
std::string utc_timestamp();

}  // namespace dsgq::io
