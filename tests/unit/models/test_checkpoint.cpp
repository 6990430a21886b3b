// src/models/checkpoint.cpp (with pickle.cpp beneath it): torch.save archives read and written.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "models/checkpoint.hpp"
#include "test_util.hpp"

using namespace dsgq;

namespace {
std::string error_of(const std::string& path) {
  try {
    models::read_checkpoint(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string unicode(const std::string& s) { return "X" + u32(static_cast<uint32_t>(s.size())) + s; }

// A zip archive as torch.save writes it, holding `pkl` and one float storage "0" with `values`.
void write_archive(const std::string& path, const std::string& pkl, const std::vector<float>& values) {
  std::string bytes;
  caffe2::serialize::PyTorchStreamWriter w([&](const void* buf, size_t n) {
    bytes.append(static_cast<const char*>(buf), n);
    return n;
  });
  w.writeRecord("data.pkl", pkl.data(), pkl.size());
  w.writeRecord("data/0", values.data(), values.size() * sizeof(float));
  w.writeEndOfFile();
  atomic_write_file(path, bytes);
}
}  // namespace

TEST(Checkpoint, PlainDictRoundTripIsBitIdentical) {
  test::TempDir tmp;
  torch::manual_seed(3);
  std::vector<models::NamedTensor> in = {{"conv.weight", torch::randn({13, 7, 3, 3})},
                                         {"bn.num_batches_tracked", torch::tensor(int64_t(42))},
                                         {"fc.bias", torch::randn({7}, torch::kDouble)}};
  models::write_checkpoint(tmp / "a.pt", in);
  const auto ck = models::read_checkpoint(tmp / "a.pt");
  ASSERT_EQ(ck.tensors.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(ck.tensors[i].name, in[i].name);
    EXPECT_EQ(ck.tensors[i].tensor.scalar_type(), in[i].tensor.scalar_type());
    EXPECT_TRUE(torch::equal(ck.tensors[i].tensor, in[i].tensor)) << in[i].name;
  }
}

// The OrderedDict form of model.state_dict() (with _metadata and 'module.' prefixes), opcode for opcode as
// python3-torch pickles it (protocol 2): the form LibTorch 1.13's pickle_load aborts on. The tensor is a
// non-contiguous view (offset 1, stride (1,2)) into a 6-element storage.
TEST(Checkpoint, ReadsOrderedDictWithMetadataAndModulePrefix) {
  using namespace std::string_literals;
  test::TempDir tmp;
  const std::string od = "ccollections\nOrderedDict\n"s;
  std::string p = "\x80\x02"s + od + "q\x00)R"s + "q\x01("s;                  // OrderedDict(), memo 0/1, MARK
  p += unicode("module.w") + "ctorch._utils\n_rebuild_tensor_v2\n"s + "(("s;  // key, rebuild fn, args, pid
  p += unicode("storage") + "ctorch\nFloatStorage\n"s + unicode("0") + unicode("cpu") + "K\x06tQ"s;
  p += "K\x01"s + "K\x02K\x02\x86"s + "K\x01K\x02\x86"s + "\x89"s;  // offset, size, stride, False
  p += "h\x00)R"s + "tR"s + "u"s;                                   // hooks OrderedDict; SETITEMS
  p += "K\x00"s + "0"s;                                             // push + POP
  p += "}"s + unicode("_metadata") + "h\x00)R"s + "sb."s;           // BUILD state, STOP
  write_archive(tmp / "od.pt", p, {0, 1, 2, 3, 4, 5});
  const auto ck = models::read_checkpoint(tmp / "od.pt");
  EXPECT_EQ(ck.container, "OrderedDict");
  EXPECT_TRUE(ck.stripped_module_prefix);
  ASSERT_EQ(ck.tensors.size(), 1u);
  EXPECT_EQ(ck.tensors[0].name, "w");
  EXPECT_TRUE(torch::equal(ck.tensors[0].tensor, torch::tensor({1.0f, 3.0f, 2.0f, 4.0f}).view({2, 2})))
      << ck.tensors[0].tensor;
}

TEST(Checkpoint, BadFilesGiveOneLineMessages) {
  test::TempDir tmp;
  atomic_write_file(tmp / "empty.pt", "");
  EXPECT_EQ(error_of(tmp / "empty.pt"),
            tmp / "empty.pt" + ": file is empty (0 bytes); expected a torch.save checkpoint (.pt zip archive)");
  atomic_write_file(tmp / "text.pt", "hello world");
  EXPECT_EQ(error_of(tmp / "text.pt"), tmp / "text.pt" +
                                           ": is not a zip archive (starts with bytes 68 65 6c 6c); "
                                           "expected a torch.save checkpoint (zip, starts with 50 4b 03 04)");
  atomic_write_file(tmp / "legacy.pt", std::string("\x80\x02\x8a\x0a", 4));
  EXPECT_NE(error_of(tmp / "legacy.pt").find("legacy (pre-1.6, non-zip) torch.save file"), std::string::npos);
  models::write_checkpoint(tmp / "ok.pt", {{"w", torch::ones({100, 100})}});
  const std::string full = read_file(tmp / "ok.pt");
  atomic_write_file(tmp / "trunc.pt", full.substr(0, full.size() / 2));
  const std::string e = error_of(tmp / "trunc.pt");
  EXPECT_EQ(e.rfind(tmp / "trunc.pt" + ": truncated or corrupt zip archive (", 0), 0u) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_EQ(error_of(tmp / "nope.pt"), tmp / "nope.pt" + ": cannot open for reading (No such file or directory)");
}
