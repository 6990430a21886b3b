#include "pipeline/inspect.hpp"

#include <torch/torch.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/sha256.hpp"
#include "io/json_record.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"

namespace dsgq::pipeline {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string inspect_checkpoint(const std::string& path) {
  const models::Checkpoint ck = models::read_checkpoint(path);
  std::ostringstream os;
  os << path << ": torch.save checkpoint, " << ck.container << ", " << ck.tensors.size() << " tensors"
     << (ck.stripped_module_prefix ? " ('module.' prefix stripped)" : "") << "\n";
  os << "sha256 " << sha256_file(path) << "\n";
  int64_t scalars = 0;
  for (const auto& nt : ck.tensors) {
    scalars += nt.tensor.numel();
    char line[512];
    std::snprintf(line, sizeof line, "  %-48s %-8s %s\n", nt.name.c_str(), c10::toString(nt.tensor.scalar_type()),
                  models::shape_string(nt.tensor).c_str());
    os << line;
  }
  os << "elements: " << scalars << "\n";
  std::string fits;
  for (const auto& a : models::architectures()) {
    auto net = models::build_network(a.name, "arch");
    if (net->mismatch(ck).empty()) fits += (fits.empty() ? "" : ", ") + a.name;
  }
  os << "fits architecture: " << (fits.empty() ? "none registered" : fits) << "\n";
  return os.str();
}

std::string inspect_record(const std::string& path) {
  const nlohmann::json j = io::read_json(path);
  if (j.value("format", "") != io::kResultFormat)
    throw InputError(path + ": format = " + quote_value(j.value("format", "(none)")) + "; expected a dsgq result record (" +
                     io::kResultFormat + ")");
  std::ostringstream os;
  os << path << ": dsgq result record " << j.value("key", "?") << "\n";
  os << "point:      " << j["point"].dump() << "\n";
  os << "metrics:    " << j["metrics"].dump() << "\n";
  os << "timings_s:  " << j["timings_s"].dump() << "\n";
  os << "provenance: " << j["provenance"].dump() << "\n";
  return os.str();
}

}  // namespace

std::string inspect_file(const std::string& path) {
  if (!file_exists(path)) throw InputError(path + ": no such file; expected a .pt checkpoint or a .json result record");
  if (ends_with(path, ".json")) return inspect_record(path);
  if (ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".th") || ends_with(path, ".tar"))
    return inspect_checkpoint(path);
  throw InputError(path + ": unrecognised file type; expected a checkpoint (.pt, .pth, .th) or a result record (.json)");
}

}  // namespace dsgq::pipeline
