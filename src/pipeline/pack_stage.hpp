#pragma once
// `dsgq pack`: an ImageNet-style folder -> one packed HDF5 set (io/packed_file.hpp) with torchvision's evaluation
// preprocessing. Ranks decode contiguous slices of the image list and write their rows collectively.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mpi/comm.hpp"
#include "pipeline/stage.hpp"

namespace dsgq::pipeline {

struct PackArgs {
  std::string images;     // --images DIR: <wnid>/<image> tree, or a flat folder with --labels
  std::string labels;     // --labels FILE: "<file> <class index> [...]" lines (flat folder)
  std::string synsets;    // --synsets FILE: "<wnid> <names>" lines; class index = line - 1 (tree)
  std::string out;        // --out FILE.h5
  int64_t size = 224;     // --size S: center crop (224; 299 for inception_v3)
  int64_t resize = 0;     // --resize R: shorter side before the crop; 0 = round(S / 0.875)
  int64_t per_class = 0;  // --per-class K: the first K images of each class (tree); 0 = all
  bool force = false;     // replace an existing --out
};

class PackStage final : public Stage {
 public:
  // Local: validates the arguments, lists the images and reads the labels; InputError naming the bad folder,
  // file, line or value. Every rank does the same and fails the same way.
  static std::unique_ptr<PackStage> prepare(const PackArgs& args, const mpi::Comm& comm);
  ~PackStage() override;
  std::string describe() const override;  // the plan: images, classes, sizes, output
  // Collective: decodes, transforms and writes; a file that cannot be decoded is reported by name (all of them,
  // from every rank) with exit code 2 and the .part removed. Returns the exit code.
  int execute(const mpi::Comm& comm) override;

 private:
  PackStage();
  struct Chunk {
    std::vector<uint8_t> pixels;  // kChunk rows of 3*S*S
    std::vector<int64_t> labels;
    std::vector<uint8_t> ok;
  };
  void decode_chunk(int64_t first, int64_t count, Chunk& c, std::vector<std::string>& failures) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsgq::pipeline
