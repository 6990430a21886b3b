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

std::unique_ptr<PackStage> PackStage::prepare(const PackArgs& args, const mpi::Comm& comm) {
  std::unique_ptr<PackStage> stage(new PackStage());
  Impl& s = *stage->impl_;
  s.args = args;
  if (args.images.empty()) throw InputError("dsgq pack: --images DIR is required (an ImageNet-style folder)");
  if (args.out.empty()) throw InputError("dsgq pack: --out FILE.h5 is required");
  if (args.size < 8 || args.size > 4096)
    throw InputError("dsgq pack: --size = '" + std::to_string(args.size) +
                     "' is out of range; expected 8..4096 (224, or 299 for inception_v3)");
  if (s.args.resize == 0) s.args.resize = io::default_resize_for(args.size);
  if (s.args.resize < s.args.size)
    throw InputError("dsgq pack: --resize = '" + std::to_string(s.args.resize) + "' is smaller than --size " +
                     std::to_string(args.size) + "; expected >= --size (default round(size / 0.875))");
  if (file_exists(args.out) && !args.force)
    throw InputError(args.out +
                     ": exists; pass --force to replace it (dsgq pack never overwrites a packed set otherwise)");
  const fs::path parent = fs::path(args.out).parent_path();
  if (!parent.empty()) make_dirs(parent.string());
  s.list = io::list_image_folder(args.images, args.labels, args.synsets, 1000, args.per_class);
  return stage;
}

std::string PackStage::describe() const {
  const Impl& s = *impl_;
  std::ostringstream o;
  o << "pack " << s.list.files.size() << " images from " << s.args.images << " (labels: " << s.list.labels_from << ", "
    << s.list.num_classes << " classes) -> " << s.args.out << ": Resize(" << s.args.resize << ") + CenterCrop("
    << s.args.size << "), uint8 [N,3," << s.args.size << "," << s.args.size << "]\n";
  return o.str();
}

namespace {

io::PackedMeta packed_meta(const PackArgs& args, const io::ImageList& list) {
  io::PackedMeta meta;
  meta.n_images = static_cast<int64_t>(list.files.size());
  meta.size = args.size;
  meta.resize = args.resize;
  meta.num_classes = list.num_classes;
  meta.source = fs::absolute(args.images).lexically_normal().string();
  meta.labels_from = list.labels_from;
  std::string listing;
  for (size_t i = 0; i < list.files.size(); ++i)
    listing += list.files[i] + "\t" + std::to_string(list.labels[i]) + "\n";
  meta.list_sha256 = sha256_hex(listing);
  meta.dsgq_version = kVersion;
  meta.created = io::utc_timestamp();
  return meta;
}

// Collective: every rank's failure messages, one per line, in rank order.
std::vector<std::string> gather_failures(const std::vector<std::string>& failures, const mpi::Comm& comm) {
  std::string mine;
  for (const auto& f : failures) mine += f + "\n";
  std::vector<std::string> bad;
  for (const auto& text : comm.allgather(mine)) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) bad.push_back(line);
  }
  return bad;
}

}  // namespace

// Decodes and transforms `count` images of the list from index `first` into the chunk buffers; a file that
// cannot be decoded leaves a zero row with ok = 0 and its message in `failures`.
void PackStage::decode_chunk(int64_t first, int64_t count, Chunk& c, std::vector<std::string>& failures) const {
  const Impl& s = *impl_;
  const int64_t pixels = 3 * s.args.size * s.args.size;
  for (int64_t i = 0; i < count; ++i) {
    const size_t k = static_cast<size_t>(first + i), j = static_cast<size_t>(i);
    const std::string path = (fs::path(s.args.images) / s.list.files[k]).string();
    uint8_t* dst = c.pixels.data() + i * pixels;
    c.labels[j] = s.list.labels[k];
    c.ok[j] = 1;
    try {
      const io::RgbImage img = io::decode_image(read_file(path), path);
      io::eval_transform(img, s.args.resize, s.args.size, dst, path);
    } catch (const InputError& e) {
      failures.push_back(e.what());
      std::fill(dst, dst + pixels, 0);
      c.ok[j] = 0;
    }
  }
}

int PackStage::execute(const mpi::Comm& comm) {
  Impl& s = *impl_;
  Timer timer;
  const int64_t n = static_cast<int64_t>(s.list.files.size()), S = s.args.size;
  std::string what = describe();
  what.pop_back();  // the newline
  log_info0("dsgq %s, %d rank(s): %s", kVersion, comm.size(), what.c_str());
  const mpi::Share share = mpi::share_of(n, comm.rank(), comm.size());
  const int64_t rounds = (comm.allreduce_max(share.size()) + kChunk - 1) / kChunk;
  io::PackedWriter writer(s.args.out, packed_meta(s.args, s.list), s.list.files, comm);
  const std::vector<uint8_t>& done = writer.done();
  if (writer.resumed())
    log_info0("pack: resuming %s.part: %lld of %lld images already written", s.args.out.c_str(),
              static_cast<long long>(std::count(done.begin(), done.end(), uint8_t{1})), static_cast<long long>(n));

  std::vector<std::string> failures;
  Chunk chunk{std::vector<uint8_t>(static_cast<size_t>(kChunk * 3 * S * S)), std::vector<int64_t>(kChunk),
              std::vector<uint8_t>(kChunk)};
  Progress progress("pack (rank 0's share of " + std::to_string(n) + ")", "images", share.size());
  for (int64_t r = 0; r < rounds; ++r) {
    const int64_t first = std::min(share.end, share.begin + r * kChunk);
    int64_t count = std::min(kChunk, share.end - first);
    if (std::all_of(done.begin() + first, done.begin() + first + count, [](uint8_t d) { return d != 0; }))
      count = 0;  // written by an earlier run: only join the collective write
    decode_chunk(first, count, chunk, failures);
    writer.write(first, count, chunk.pixels.data(), chunk.labels.data(), chunk.ok.data());
    progress.update(std::min(share.end, share.begin + (r + 1) * kChunk) - share.begin);
  }

  // Every rank's failures, so that one run names every bad file.
  const std::vector<std::string> bad = gather_failures(failures, comm);
  if (!bad.empty()) {
    if (comm.is_root()) {
      for (size_t i = 0; i < bad.size() && i < 20; ++i) log_error("%s", bad[i].c_str());
      if (bad.size() > 20) log_error("... and %zu more", bad.size() - 20);
      log_error(
          "%s: not written: %zu of %lld images could not be decoded (listed above); fix them and run the same "
          "dsgq pack again: %s.part keeps the other rows and only the missing ones are decoded (with a changed "
          "image list it starts over)",
          s.args.out.c_str(), bad.size(), static_cast<long long>(n), s.args.out.c_str());
    }
    return 2;
  }
  writer.finish();
  log_info0("pack: wrote %s: %lld images, [%lld,3,%lld,%lld] uint8, in %.1f s", s.args.out.c_str(),
            static_cast<long long>(n), static_cast<long long>(n), static_cast<long long>(S), static_cast<long long>(S),
            timer.seconds());
  return 0;
}

}  // namespace dsgq::pipeline
