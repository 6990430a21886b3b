// `dsgq synth` end to end on the real resnet20: bad input (exit 2, one line, nothing existing overwritten) and a
// kill -9 of one rank mid-run (the job ends, the rerun resumes and produces the same bytes).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <thread>

#include "core/fs.hpp"
#include "core/sha256.hpp"
#include "dsgq/version.hpp"
#include "io/image_set.hpp"
#include "io/synth_file.hpp"
#include "models/checkpoint.hpp"
#include "mpi/nccl.hpp"
#include "synth/sampling.hpp"
#include "test_util.hpp"

using namespace dsgq;
using test::dsgq_bin;
using test::expect_exit2;
using test::mpiexec;
using test::wait_for;

namespace {

std::string synth_cmd(const std::string& out, const std::string& extra) {
  return dsgq_bin() + " synth --threads 1 --set synth.out=" + out + " " + extra;
}

}  // namespace

TEST(SynthCli, BadInputExitsTwoAndOverwritesNothing) {
  test::TempDir tmp;
  // iters = 0
  expect_exit2(test::run_command(synth_cmd(tmp / "a.h5", "--set synth.iters=0")),
               "--set synth.iters=0: iters = '0' is out of range; expected 1..1000000");
  // the sample-correlation term belongs to dsg
  expect_exit2(test::run_command(synth_cmd(tmp / "a.h5", "--set synth.method=zeroq --set synth.sci_weight=1")),
               "sci_weight = '1' applies to method dsg only; expected 0 for method zeroq");
  // batch smaller than the ranks
  expect_exit2(test::run_command(mpiexec() + " -n 3 " + synth_cmd(tmp / "a.h5", "--set synth.batch=2")),
               "batch = '2' is smaller than the 3 ranks; expected batch >= ranks");
  // unwritable output folder (a regular file where a folder is needed; root ignores permission bits)
  atomic_write_file(tmp / "file", "x");
  expect_exit2(test::run_command(synth_cmd(tmp / "file/sub/a.h5", "")), tmp / "file/sub: cannot create folder");
  // An existing dataset made by another model/config is not overwritten.
  auto ok = test::run_command(
      synth_cmd(tmp / "g.h5", "--set synth.method=gaussian --set synth.n_images=8 --set synth.batch=8"));
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  const std::string sha = sha256_file(tmp / "g.h5");
  expect_exit2(test::run_command(synth_cmd(tmp / "g.h5",
                                           "--set model.arch=resnet8 --set synth.method=gaussian "
                                           "--set synth.n_images=8 --set synth.batch=8")),
               tmp / "g.h5: exists and was made by a different config (model resnet20, method gaussian, 8 images)");
  EXPECT_EQ(sha256_file(tmp / "g.h5"), sha);
  // The same config is skipped, not redone.
  ok = test::run_command(
      synth_cmd(tmp / "g.h5", "--set synth.method=gaussian --set synth.n_images=8 --set synth.batch=8"));
  EXPECT_NE(ok.output.find("complete; skipped"), std::string::npos) << ok.output;
  // A .part from a different config is refused and kept.
  std::filesystem::rename(tmp / "g.h5", tmp / "p.h5.part");
  expect_exit2(test::run_command(synth_cmd(tmp / "p.h5",
                                           "--set synth.method=gaussian --set synth.n_images=8 "
                                           "--set synth.batch=8 --set synth.seed=5")),
               tmp / "p.h5.part: is a partial dataset from a different config");
  EXPECT_EQ(sha256_file(tmp / "p.h5.part"), sha);
  // Readers refuse a .part and a foreign file.
  auto r = test::run_command(dsgq_bin() + " inspect " + (tmp / "p.h5.part"));
  expect_exit2(r, "is an incomplete dataset (.part: synthesis was interrupted)");
  atomic_write_file(tmp / "foreign.h5", "not hdf5");
  expect_exit2(test::run_command(dsgq_bin() + " inspect " + (tmp / "foreign.h5")), "is not an HDF5 file");
}

TEST(SynthCli, KillNineOfOneRankEndsTheJobAndTheRerunResumesToTheSameBytes) {
  test::TempDir tmp;
  const std::string args = "--set synth.method=zeroq --set synth.n_images=24 --set synth.batch=6 --set synth.iters=300";
  auto full = test::run_command(mpiexec() + " -n 2 " + synth_cmd(tmp / "full.h5", args));
  ASSERT_EQ(full.exit_code, 0) << full.output;

  const std::string log = tmp / "killed.log";
  test::run_command("(" + mpiexec() + " -n 2 " + synth_cmd(tmp / "killed.h5", args) + " > " + log +
                    " 2>&1; echo $? > " + (tmp / "killed.rc") + ") > /dev/null 2>&1 &");
  ASSERT_TRUE(
      wait_for([&] { return file_exists(log) && read_file(log).find("batch 1/4 written") != std::string::npos; }, 120))
      << (file_exists(log) ? read_file(log) : "no log");
  // Kill one dsgq rank (not mpirun) with SIGKILL.
  const auto pids = test::run_command("pgrep -f '^" + dsgq_bin() + " synth .*killed.h5' | head -1");
  ASSERT_FALSE(pids.output.empty()) << "no rank process found";
  const auto t0 = std::chrono::steady_clock::now();
  test::run_command("kill -9 " + pids.output);
  ASSERT_TRUE(wait_for([&] { return file_exists(tmp / "killed.rc"); }, 60)) << "the job did not end within 60 s";
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(std::stoi(read_file(tmp / "killed.rc")), 0);
  EXPECT_LT(secs, 60.0);
  std::printf("[ info     ] the job ended %.1f s after kill -9 of one rank\n", secs);
  EXPECT_TRUE(file_exists(tmp / "killed.h5.part"));
  EXPECT_FALSE(file_exists(tmp / "killed.h5"));

  auto rerun = test::run_command(mpiexec() + " -n 2 " + synth_cmd(tmp / "killed.h5", args));
  ASSERT_EQ(rerun.exit_code, 0) << rerun.output;
  EXPECT_NE(rerun.output.find("resumed: "), std::string::npos) << rerun.output;
  const io::SynthSet a = io::read_synth(tmp / "full.h5"), b = io::read_synth(tmp / "killed.h5");
  EXPECT_TRUE(torch::equal(a.images, b.images)) << "max diff " << (a.images - b.images).abs().max().item<float>();
  EXPECT_TRUE(torch::equal(a.labels, b.labels));
  EXPECT_TRUE(torch::equal(a.loss, b.loss));
}

// Every shipped config validates (--dry-run resolves it, loads the weights and checks the data). The ImageNet
// configs (those naming ${DSGQ_IMAGENET}) need packed sets and torchvision checkpoints: tests/oracle/
// test_pack_oracle.py validates each of them against packed samples and python3-torchvision weights.
TEST(Configs, EveryShippedConfigValidates) {
  namespace fs = std::filesystem;
  int checked = 0;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(kSourceDir) / "configs")) {
    if (e.path().extension() != ".toml") continue;
    if (read_file(e.path().string()).find("${DSGQ_IMAGENET}") != std::string::npos) continue;
    const std::string dir = e.path().parent_path().filename().string();
    test::TempDir out;
    // Sweeps list their points (validating every one); synth files synthesize; the rest are run files.
    const std::string cmd = dir == "synth" ? "synth --dry-run" : dir == "sweeps" ? "sweep --list" : "run --dry-run";
    const auto r = test::run_command(dsgq_bin() + " " + cmd + " --config " + e.path().string() +
                                     " --set output.dir=" + (out / "runs"));
    EXPECT_EQ(r.exit_code, 0) << e.path() << "\n" << r.output;
    ++checked;
  }
  EXPECT_GE(checked, 12);
}

// Replaces /images of a dsgq-synth/1 file by [n,3,size,size] zeros, with n_images and /batch_done to match.
void replace_images(const std::string& path, hsize_t n, hsize_t size) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0) << path;
  H5Ldelete(f, "/images", H5P_DEFAULT);
  H5Ldelete(f, "/batch_done", H5P_DEFAULT);
  const hsize_t dims[4] = {n, 3, size, size}, nb = (n + 7) / 8;
  const hid_t space = H5Screate_simple(4, dims, nullptr), bspace = H5Screate_simple(1, &nb, nullptr);
  H5Dclose(H5Dcreate2(f, "/images", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  const hid_t bd = H5Dcreate2(f, "/batch_done", H5T_NATIVE_UINT8, bspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const std::vector<uint8_t> ones(nb + 1, 1);
  if (nb > 0) H5Dwrite(bd, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, ones.data());
  H5Dclose(bd);
  const hid_t attr = H5Aopen(f, "n_images", H5P_DEFAULT);
  const int64_t v = static_cast<int64_t>(n);
  H5Awrite(attr, H5T_NATIVE_INT64, &v);
  H5Aclose(attr);
  H5Sclose(space);
  H5Sclose(bspace);
  H5Fclose(f);
}

TEST(QuantCli, BadInputExitsTwo) {
  test::TempDir tmp;
  const std::string base = dsgq_bin() + " quantize --threads 1 --set output.dir=" + (tmp / "runs") + " ";
  expect_exit2(test::run_command(base + "--set quant.w_bits=9"),
               "--set quant.w_bits=9: w_bits = '9' is out of range; expected 2..8");
  expect_exit2(test::run_command(base + "--set quant.a_bits=1"),
               "--set quant.a_bits=1: a_bits = '1' is out of range; expected 2..32");
  expect_exit2(test::run_command(base + "--set quant.a_bits=16"),
               "a_bits = '16' is out of range; expected 2..8, or 32 for activations in floating point");
  // NCCL: refused without an NCCL build, and for a CPU device in one
  expect_exit2(test::run_command(base + "--set runtime.collectives=nccl"),
               mpi::nccl_built()
                   ? "[runtime]: collectives = 'nccl' needs a CUDA device; [runtime] device is 'cpu'"
                   : "[runtime]: collectives = 'nccl': this dsgq was built without NCCL; expected a build "
                     "configured with -DDSGQ_WITH_NCCL=ON");
  expect_exit2(test::run_command(base + "--set quant.act_observer=kl"),
               "act_observer = 'kl' is not allowed; expected one of auto, minmax, ema, percentile, mse");
  expect_exit2(test::run_command(base + "--set quant.protocol=brecq"),
               "protocol = 'brecq' is not allowed; expected one of zeroq, adaround");
  expect_exit2(test::run_command(base + "--set quant.adaround.iterations=5"),
               "--set quant.adaround.iterations=5: iterations is an unknown key; known keys in [quant.adaround]:");
  expect_exit2(test::run_command(base + "--set quant.calib_data=" + (tmp / "none.h5")),
               "calibration set '" + (tmp / "none.h5") + "' does not exist");
  // A calibration set made for another model.
  auto ok = test::run_command(synth_cmd(tmp / "r8.h5",
                                        "--set model.arch=resnet8 --set synth.method=gaussian "
                                        "--set synth.n_images=8 --set synth.batch=8"));
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  expect_exit2(test::run_command(base + "--set quant.calib_data=" + (tmp / "r8.h5")),
               tmp / "r8.h5: calibration set was made for model 'resnet8'; expected one made for resnet20");
  expect_exit2(test::run_command(base + "--set quant.calib_data=" + (tmp / "r8.h5") +
                                 " --set model.arch=resnet8 "
                                 "--set quant.n_calib=9"),
               "n_calib = '9' but " + (tmp / "r8.h5") + " holds 8 images");
  // Hand-edited copies of a resnet20 set: another input size, and no images at all.
  ok = test::run_command(
      synth_cmd(tmp / "r20.h5", "--set synth.method=gaussian --set synth.n_images=8 --set synth.batch=8"));
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  std::filesystem::copy_file(tmp / "r20.h5", tmp / "small.h5");
  std::filesystem::copy_file(tmp / "r20.h5", tmp / "empty.h5");
  replace_images(tmp / "small.h5", 8, 28);
  replace_images(tmp / "empty.h5", 0, 32);
  expect_exit2(test::run_command(base + "--set quant.calib_data=" + (tmp / "small.h5")),
               tmp / "small.h5: images are [3,28,28]; resnet20 expects [N,3,32,32]");
  expect_exit2(test::run_command(base + "--set quant.calib_data=" + (tmp / "empty.h5")),
               tmp / "empty.h5: calibration set holds no images (n_images = 0); expected at least 1");
}

// The adaround protocol end to end through `dsgq run` on two ranks (short: 64 real images, 50 iterations per
// layer, 2000 test images): a record with per-layer reports, encodings for every layer, a W4A4 top-1 near FP32.
TEST(QuantCli, AdaroundRunEndToEndOnTwoRanks) {
  test::TempDir tmp;
  const auto r = test::run_command(
      mpiexec() + " -n 2 " + dsgq_bin() + " run --threads 1 --set output.dir=" + (tmp / "runs") +
      " --set synth.method=real --set synth.n_images=64 --set synth.batch=64 --set quant.protocol=adaround"
      " --set quant.adaround.iters=50 --set quant.adaround.lr=0.01 --set eval.n_images=2000");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string rec_path;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path / "runs/results")) rec_path = e.path().string();
  const std::string rec = read_file(rec_path);
  const auto j_top1 = rec.find("\"top1\": ");
  ASSERT_NE(j_top1, std::string::npos) << rec;
  const double top1 = std::stod(rec.substr(j_top1 + 8));
  std::printf(
      "[ info     ] adaround W4A4, 64 real images, 50 iterations/layer, 2 ranks: top-1 %.2f on 2000 test images\n",
      top1);
  EXPECT_GT(top1, 85.0);
  EXPECT_NE(rec.find("\"layer\": \"layer3.2.conv2\""), std::string::npos);
  const std::string enc =
      read_file(tmp / ("runs/quant/" + std::filesystem::path(rec_path).stem().string() + ".encodings.json"));
  EXPECT_NE(enc.find("\"linear.weight\""), std::string::npos);
  EXPECT_NE(enc.find("\"layer3.2.relu2\""), std::string::npos);
}

namespace {

// Flips `count` bytes of dataset `name` of an HDF5 file in place, starting `byte` bytes into its (contiguous) data.
void flip_dataset_bytes(const std::string& path, const char* name, haddr_t byte, int count) {
  haddr_t offset = HADDR_UNDEF;
  {
    const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    ASSERT_GE(f, 0) << path;
    const hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    ASSERT_GE(d, 0) << name;
    offset = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
  }
  ASSERT_NE(offset, HADDR_UNDEF) << name << " is not contiguous";
  std::FILE* fp = std::fopen(path.c_str(), "r+b");
  ASSERT_NE(fp, nullptr) << path;
  for (int k = 0; k < count; ++k) {
    std::fseek(fp, static_cast<long>(offset + byte + k), SEEK_SET);
    const int c = std::fgetc(fp);
    std::fseek(fp, static_cast<long>(offset + byte + k), SEEK_SET);
    std::fputc(c ^ 0x5A, fp);
  }
  std::fclose(fp);
}

}  // namespace

// real_pick = "seeded": the set holds the images of the file at draw_subset(seed)'s indices, with their labels, the
// same bytes on 1 and 2 ranks (a batch split over the ranks reads runs of the drawn indices), other images for
// another seed.
TEST(SynthCli, SeededRealSetHoldsTheDrawnImagesOnAnyRankCount) {
  test::TempDir tmp;
  const std::string file = test::data_path("cifar10/data_batch_1.bin");
  const std::string args =
      "--set synth.method=real --set synth.real_pick=seeded --set synth.n_images=24 "
      "--set synth.batch=16 --set synth.real_data=" +
      file + " --set synth.seed=";
  for (const auto& [out, cmd] : {std::pair{"1.h5", synth_cmd(tmp / "1.h5", args + "5")},
                                 std::pair{"2.h5", mpiexec() + " -n 2 " + synth_cmd(tmp / "2.h5", args + "5")},
                                 std::pair{"6.h5", synth_cmd(tmp / "6.h5", args + "6")}}) {
    const auto r = test::run_command(cmd);
    ASSERT_EQ(r.exit_code, 0) << out << ": " << r.output;
  }
  const io::SynthSet set = io::read_synth(tmp / "1.h5"), two = io::read_synth(tmp / "2.h5");
  EXPECT_TRUE(torch::equal(set.images, two.images));
  EXPECT_TRUE(torch::equal(set.labels, two.labels));
  const std::vector<int64_t> idx = synth::draw_subset(5, 10000, 24);
  std::vector<at::Tensor> images, labels;
  for (const int64_t i : idx) {
    const io::ImageSet one = io::read_image_set(file, i, 1);
    images.push_back(one.images);
    labels.push_back(one.labels);
  }
  EXPECT_TRUE(torch::equal(set.labels, torch::cat(labels)));
  // the stored images are the file's, normalized: per channel one affine map of the uint8 values fits every pixel
  const at::Tensor x = torch::cat(images).to(torch::kDouble).transpose(0, 1).reshape({3, -1});
  const at::Tensor y = set.images.to(torch::kDouble).transpose(0, 1).reshape({3, -1});
  for (int64_t c = 0; c < 3; ++c) {
    const at::Tensor xc = x[c] - x[c].mean(), yc = y[c] - y[c].mean();
    const double a = (xc * yc).sum().item<double>() / (xc * xc).sum().item<double>();
    EXPECT_GT(a, 0.0) << "channel " << c;
    EXPECT_LT((yc - a * xc).abs().max().item<double>(), 1e-5) << "channel " << c << ": not the drawn images";
  }
  EXPECT_FALSE(torch::equal(io::read_synth(tmp / "6.h5").labels, set.labels));
  // dsgq inspect reports how the network classifies the set's labels, beside the first real images' figures
  const auto r = test::run_command(dsgq_bin() + " inspect " + (tmp / "1.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("labels on resnet20: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" of 24 images classified as their label, cross-entropy "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(the first 24 real CIFAR-10 training images: "), std::string::npos) << r.output;
}

// Files that rot are refused, not used: 64 flipped bytes in the images of a synthetic set and of a packed set, and
// a NaN in a checkpoint, each exit 2 with one line naming the file and the culprit (row and batch, or tensor).
TEST(Corruption, FlippedImageBytesAndNonFiniteWeightsExitTwoNamingTheCulprit) {
  test::TempDir tmp;
  // synthetic set: 8 images in batches of 4; the bytes flipped lie in image 5 (batch 1)
  auto ok = test::run_command(
      synth_cmd(tmp / "g.h5", "--set synth.method=gaussian --set synth.n_images=8 --set synth.batch=4"));
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  const haddr_t image_bytes = 3 * 32 * 32 * sizeof(float);
  flip_dataset_bytes(tmp / "g.h5", "/images", 5 * image_bytes + 100, 64);
  const std::string synth_msg = tmp / "g.h5: /images row 5 (batch 1) does not match its checksum in /image_sha256";
  expect_exit2(test::run_command(dsgq_bin() + " quantize --threads 1 --set output.dir=" + (tmp / "runs") +
                                 " --set quant.calib_data=" + (tmp / "g.h5")),
               synth_msg);
  expect_exit2(test::run_command(dsgq_bin() + " inspect " + (tmp / "g.h5")), synth_msg);

  // packed set: 3 real ImageNet validation images at 32x32; the bytes flipped lie in image 1
  int copied = 0;
  for (const auto& e : std::filesystem::directory_iterator(test::data_path("imagenet_samples/images")))
    if (copied < 3 && e.path().extension() == ".JPEG") {  // an ImageNet tree with two classes
      const std::string cls = tmp / (copied < 2 ? "imgs/n01440764" : "imgs/n01443537");
      std::filesystem::create_directories(cls);
      std::filesystem::copy_file(e.path(), cls + "/" + e.path().filename().string());
      ++copied;
    }
  ASSERT_EQ(copied, 3);
  ok = test::run_command(dsgq_bin() + " pack --images " + (tmp / "imgs") + " --size 32 --resize 36 --out " +
                         (tmp / "p.h5"));
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  flip_dataset_bytes(tmp / "p.h5", "/images", 3 * 32 * 32 + 7, 64);
  expect_exit2(
      test::run_command(synth_cmd(tmp / "r.h5", "--set synth.method=real --set synth.real_data=" + (tmp / "p.h5") +
                                                    " --set synth.n_images=3 --set synth.batch=3")),
      tmp / "p.h5: /images row 1 does not match its checksum in /image_sha256");

  // checkpoint with a NaN
  models::Checkpoint ck = models::read_checkpoint(test::data_path("models/cifar10_resnet20.pt"));
  for (auto& nt : ck.tensors)
    if (nt.name == "layer2.1.conv1.weight") nt.tensor.reshape({-1})[17] = NAN;
  models::write_checkpoint(tmp / "nan.pt", ck.tensors);
  expect_exit2(test::run_command(dsgq_bin() + " eval --threads 1 --set eval.n_images=100 --set output.dir=" +
                                 (tmp / "runs") + " --set model.weights=" + (tmp / "nan.pt")),
               tmp /
                   "nan.pt: tensor 'layer2.1.conv1.weight' holds 1 non-finite value(s) (the first, at flat index "
                   "17, is nan); expected finite weights");
}
