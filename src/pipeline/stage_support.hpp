#pragma once
// What the stages share: loading the configured network, the results folder and its per-point record
// (skip a finished point, refuse a record of another point), the evaluation share of each rank, and the common
// parts of a result record (timing spans, provenance).
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "config/run_config.hpp"
#include "mpi/comm.hpp"
#include "io/image_set.hpp"
#include "models/network.hpp"
#include "pipeline/runtime.hpp"

namespace dsgq::pipeline {

struct LoadedModel {
  std::unique_ptr<models::Network> net;  // strict import of [model] weights, on the runtime's device
  std::string weights_sha256;
};
// Local. Throws InputError for an unknown architecture or weights that do not fit it.
LoadedModel load_model(const config::RunConfig& cfg, const Runtime& rt);

// Local, in prepare(): creates <output.dir>/results (InputError if not writable); unless `force`, an existing
// record must be for the same `point` (InputError naming both otherwise).
void check_record_slot(const config::RunConfig& cfg, const std::string& record_path, const nlohmann::json& point,
                       bool force);
// Local: every record in <dir>/results is in this version's format (InputError naming the first that is not).
void check_results_dir(const std::string& dir);
// Local: the .json files of <dir>/results, sorted (none when the folder does not exist).
std::vector<std::string> result_files(const std::string& dir);
// Local, in execute(): true (and a log line from rank 0) when the record exists and `force` is not set.
bool already_done(const std::string& record_path, const std::string& key, bool force);

// Local: the number of images in `path` (a CIFAR-10 binary file or a packed set from dsgq pack), checked against
// the network's input size; `where` names the config key in messages ("configs/x.toml [eval]: data").
int64_t check_image_set(const std::string& path, const std::string& where, const models::Network& net);

// Local: how many images of `path` to use: `requested`, or all of them when it is 0. InputError naming `where_n`
// ("configs/x.toml [eval]: n_images") when the set holds fewer.
int64_t check_image_count(const std::string& path, const std::string& where, const models::Network& net,
                          int64_t requested, const std::string& where_n);

// Local: this rank's contiguous share of the first n images of [eval] data.
io::ImageSet eval_share(const config::RunConfig& cfg, int64_t n, const mpi::Comm& comm);

nlohmann::json span_json(const Span& s);
// Collective (gathers the host names). Version, git, config sha256, world size, threads, device, hosts, time.
nlohmann::json provenance_json(const config::RunConfig& cfg, const Runtime& rt, const mpi::Comm& comm);

}  // namespace dsgq::pipeline
