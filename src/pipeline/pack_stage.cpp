#include "pipeline/pack_stage.hpp"

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <vector>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/sha256.hpp"
#include "core/timer.hpp"
#include "dsgq/version.hpp"
#include "io/image_decode.hpp"
#include "io/image_folder.hpp"
#include "io/json_record.hpp"
#include "io/packed_file.hpp"

namespace dsgq::pipeline {
namespace fs = std::filesystem;

namespace {
constexpr int64_t kChunk = 32;  // images decoded between two collective writes
}  // namespace

struct PackStage::Impl {
  PackArgs args;
  io::ImageList list;
};

PackStage::PackStage() : impl_(std::make_unique<Impl>()) {}
PackStage::~PackStage() = default;

std::unique_ptr<PackStage> PackStage::prepare(const PackArgs& args, const dist::Comm& comm) {
  std::unique_ptr<PackStage> stage(new PackStage());
  Impl& s = *stage->impl_;
  s.args = args;
  if (args.images.empty()) throw InputError("dsgq pack: --images DIR is required (an ImageNet-style folder)");
  if (args.out.empty()) throw InputError("dsgq pack: --out FILE.h5 is required");
  if (args.size < 8 || args.size > 4096)
    throw InputError("dsgq pack: --size = '" + std::to_string(args.size) + "' is out of range; expected 8..4096 (224, or 299 for inception_v3)");
  if (s.args.resize == 0) s.args.resize = io::default_resize_for(args.size);
  if (s.args.resize < s.args.size)
    throw InputError("dsgq pack: --resize = '" + std::to_string(s.args.resize) + "' is smaller than --size " +
                     std::to_string(args.size) + "; expected >= --size (default round(size / 0.875))");
  if (file_exists(args.out) && !args.force)
    throw InputError(args.out + ": exists; pass --force to replace it (dsgq pack never overwrites a packed set otherwise)");
  const fs::path parent = fs::path(args.out).parent_path();
  if (!parent.empty()) make_dirs(parent.string());
  s.list = io::list_image_folder(args.images, args.labels, args.synsets, 1000, args.per_class);
  return stage;
}

std::string PackStage::describe() const {
  const Impl& s = *impl_;
  std::ostringstream o;
  o << "pack " << s.list.files.size() << " images from " << s.args.images << " (labels: " << s.list.labels_from
    << ", " << s.list.num_classes << " classes) -> " << s.args.out << ": Resize(" << s.args.resize
    << ") + CenterCrop(" << s.args.size << "), uint8 [N,3," << s.args.size << "," << s.args.size << "]\n";
  return o.str();
}

int PackStage::execute(const dist::Comm& comm) {
  Impl& s = *impl_;
  Timer timer;
  const int64_t n = static_cast<int64_t>(s.list.files.size()), S = s.args.size, pixels = 3 * S * S;
  std::string what = describe();
  what.pop_back();  // the newline
  log_info0("dsgq %s, %d rank(s): %s", kVersion, comm.size(), what.c_str());
  const dist::Share share = dist::share_of(n, comm.rank(), comm.size());
  const int64_t rounds = (comm.allreduce_max(share.size()) + kChunk - 1) / kChunk;

  io::PackedMeta meta;
  meta.n_images = n;
  meta.size = S;
  meta.resize = s.args.resize;
  meta.num_classes = s.list.num_classes;
  meta.source = fs::absolute(s.args.images).lexically_normal().string();
  meta.labels_from = s.list.labels_from;
  std::string listing;
  for (size_t i = 0; i < s.list.files.size(); ++i) listing += s.list.files[i] + "\t" + std::to_string(s.list.labels[i]) + "\n";
  meta.list_sha256 = sha256_hex(listing);
  meta.dsgq_version = kVersion;
  meta.created = io::utc_timestamp();
  io::PackedWriter writer(s.args.out, meta, s.list.files, comm);
  const std::vector<uint8_t>& done = writer.done();
  if (writer.resumed()) {
    const int64_t n_done = std::count(done.begin(), done.end(), uint8_t{1});
    log_info0("pack: resuming %s.part: %lld of %lld images already written", s.args.out.c_str(),
              static_cast<long long>(n_done), static_cast<long long>(n));
  }

  std::vector<std::string> failures;
  std::vector<uint8_t> buf(static_cast<size_t>(kChunk * pixels)), ok(kChunk);
  std::vector<int64_t> labels(kChunk);
  double next_log = 10.0;
  for (int64_t r = 0; r < rounds; ++r) {
    const int64_t first = std::min(share.end, share.begin + r * kChunk);
    int64_t count = std::min(kChunk, share.end - first);
    if (std::all_of(done.begin() + first, done.begin() + first + count, [](uint8_t d) { return d != 0; }))
      count = 0;  // written by an earlier run: only join the collective write
    for (int64_t i = 0; i < count; ++i) {
      const std::string& rel = s.list.files[static_cast<size_t>(first + i)];
      const std::string path = (fs::path(s.args.images) / rel).string();
      uint8_t* dst = buf.data() + i * pixels;
      labels[static_cast<size_t>(i)] = s.list.labels[static_cast<size_t>(first + i)];
      ok[static_cast<size_t>(i)] = 1;
      try {
        const io::RgbImage img = io::decode_image(read_file(path), path);
        io::eval_transform(img, s.args.resize, S, dst, path);
      } catch (const InputError& e) {
        failures.push_back(e.what());
        std::fill(dst, dst + pixels, 0);
        ok[static_cast<size_t>(i)] = 0;
      }
    }
    writer.write(first, count, buf.data(), labels.data(), ok.data());
    if (comm.is_root() && (timer.seconds() >= next_log || r + 1 == rounds)) {
      const int64_t progressed = std::min(share.end, share.begin + (r + 1) * kChunk) - share.begin;
      const double rate = progressed / std::max(timer.seconds(), 1e-9);
      log_info("pack: %lld/%lld images of this rank's share (%lld in all), %.1f images/s per rank, %.0f s left",
               static_cast<long long>(progressed), static_cast<long long>(share.size()), static_cast<long long>(n), rate,
               (share.size() - progressed) / std::max(rate, 1e-9));
      next_log = timer.seconds() + 10.0;
    }
  }

  // Every rank's failures, so that one run names every bad file.
  std::string mine;
  for (const auto& f : failures) mine += f + "\n";
  std::vector<std::string> all = comm.allgather(mine);
  std::vector<std::string> bad;
  for (const auto& text : all) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) bad.push_back(line);
  }
  if (!bad.empty()) {
    if (comm.is_root()) {
      for (size_t i = 0; i < bad.size() && i < 20; ++i) log_error("%s", bad[i].c_str());
      if (bad.size() > 20) log_error("... and %zu more", bad.size() - 20);
      log_error("%s: not written: %zu of %lld images could not be decoded (listed above); fix them and run the same "
                "dsgq pack again: %s.part keeps the other rows and only the missing ones are decoded (with a changed "
                "image list it starts over)", s.args.out.c_str(), bad.size(), static_cast<long long>(n),
                s.args.out.c_str());
    }
    return 2;
  }
  writer.finish();
  log_info0("pack: wrote %s: %lld images, [%lld,3,%lld,%lld] uint8, in %.1f s", s.args.out.c_str(),
            static_cast<long long>(n), static_cast<long long>(n), static_cast<long long>(S),
            static_cast<long long>(S), timer.seconds());
  return 0;
}

}  // namespace dsgq::pipeline
