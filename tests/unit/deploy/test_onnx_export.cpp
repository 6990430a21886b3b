// src/deploy/onnx_export.cpp: the QDQ pattern written for weights and activation sites, and what is refused. (The
// zoo through ONNX's checker and ONNX Runtime: tests/oracle/test_onnx_export.py.)
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "deploy/onnx_export.hpp"
#include "models/checkpoint.hpp"
#include "models/network.hpp"

using namespace dsgq;

namespace {

// conv(3->4, 3x3) -> BN -> ReLU (site "relu") -> mean -> linear(4->2), weights set by the test.
std::unique_ptr<models::Network> tiny() {
  models::InputSpec in;
  in.height = in.width = 8;
  in.num_classes = 2;
  auto net = std::make_unique<models::Network>("tiny", in);
  const int c = net->add_conv("conv", 3, 4, 3, 1, 1, false);
  const int b = net->add_bn("bn", 4, 1e-5);
  const int r = net->add_act("relu", models::ActKind::relu);
  const int fc = net->add_linear("fc", 4, 2, true);
  net->set_forward([=](const models::Ops& op, const at::Tensor& x) {
    return op.linear(fc, op.act(r, op.bn(b, op.conv(c, x))).mean({2, 3}));
  });
  models::Checkpoint ck;
  at::manual_seed(3);
  for (const auto& [name, shape] : net->param_specs())
    ck.tensors.push_back({name, name == "bn.running_var" ? at::ones(shape) : at::randn(shape) * 0.3});
  net->load(ck);
  return net;
}

nlohmann::json entry(double scale, int64_t offset, int64_t bits) {
  return {{"bitwidth", bits},
          {"dtype", "int"},
          {"is_symmetric", "False"},
          {"scale", scale},
          {"offset", offset},
          {"min", static_cast<double>(offset) * scale},
          {"max", static_cast<double>(offset + (int64_t{1} << bits) - 1) * scale}};
}

struct Fixture {
  std::unique_ptr<models::Network> net = tiny();
  std::vector<at::Tensor> weights{at::Tensor(), at::Tensor()};
  nlohmann::json enc = {{"version", "0.6.1"},
                        {"param_encodings", nlohmann::json::object()},
                        {"activation_encodings", nlohmann::json::object()}};
  std::string path = (std::filesystem::temp_directory_path() / "dsgq_unit_onnx.onnx").string();

  // The conv weight on a 4-bit grid of scale 0.05, offset -8 per channel (codes -8..7).
  void quantize_conv() {
    weights[0] = at::clamp(at::round(net->param("conv.weight") / 0.05), -8, 7) * 0.05;
    enc["param_encodings"]["conv.weight"] = nlohmann::json::array();
    for (int i = 0; i < 4; ++i) enc["param_encodings"]["conv.weight"].push_back(entry(0.05, -8, 4));
  }
  onnx::ModelProto write() {
    deploy::write_onnx(path, *net, weights, enc, {{"arch", "tiny"}});
    onnx::ModelProto m;
    EXPECT_TRUE(m.ParseFromString(read_file(path)));
    return m;
  }
};

std::vector<std::string> op_types(const onnx::ModelProto& m) {
  std::vector<std::string> ops;
  for (const auto& n : m.graph().node()) ops.push_back(n.op_type());
  return ops;
}

const onnx::TensorProto* initializer(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& t : m.graph().initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

}  // namespace

TEST(OnnxExport, WeightCodesAndActivationQdq) {
  Fixture f;
  f.quantize_conv();
  f.enc["activation_encodings"]["relu"] = {{"output", {{"0", entry(0.1, 0, 4)}}}};
  const onnx::ModelProto m = f.write();
  EXPECT_EQ(m.ir_version(), 8);
  EXPECT_EQ(m.opset_import(0).version(), 13);
  const std::vector<std::string> want{"DequantizeLinear",
                                      "Conv",
                                      "BatchNormalization",
                                      "Relu",
                                      "Clip",
                                      "QuantizeLinear",
                                      "DequantizeLinear",
                                      "ReduceMean",
                                      "Gemm",
                                      "Identity"};
  EXPECT_EQ(op_types(m), want);
  // int8 codes with zero point 0: code * scale is the quantized weight.
  const onnx::TensorProto* q = initializer(m, "conv.weight_quantized");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->data_type(), onnx::TensorProto::INT8);
  const std::string& raw = q->raw_data();
  const at::Tensor codes = at::from_blob(const_cast<char*>(raw.data()), {4, 3, 3, 3}, at::kChar).to(at::kFloat);
  EXPECT_TRUE(at::allclose(codes * 0.05, f.weights[0], 0, 1e-6));
  // The clip bounds are the 4-bit range [0, 15 * 0.1].
  const onnx::TensorProto* hi = initializer(m, "relu_max");
  ASSERT_NE(hi, nullptr);
  float v;
  std::memcpy(&v, hi->raw_data().data(), 4);
  EXPECT_FLOAT_EQ(v, 1.5f);
  std::filesystem::remove(f.path);
}

TEST(OnnxExport, EightBitsNeedNoClipAndUseUint8Codes) {
  Fixture f;
  // Codes -100..155 at scale 0.01: beyond int8, so uint8 codes q + 100 with zero point 100.
  const at::Tensor codes = at::arange(-100, 8, at::kLong).view({4, 3, 3, 3});
  codes[3][2][2][2] = 155;
  f.weights[0] = codes.to(at::kFloat) * 0.01;
  for (int i = 0; i < 4; ++i) f.enc["param_encodings"]["conv.weight"].push_back(entry(0.01, -100, 8));
  f.enc["activation_encodings"]["relu"] = {{"output", {{"0", entry(0.01, 0, 8)}}}};
  const onnx::ModelProto m = f.write();
  const auto ops = op_types(m);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "Clip"), 0);
  EXPECT_EQ(initializer(m, "conv.weight_quantized")->data_type(), onnx::TensorProto::UINT8);
  EXPECT_EQ(initializer(m, "conv.weight_zero_point")->raw_data(), std::string(4, static_cast<char>(100)));
  const std::string& raw = initializer(m, "conv.weight_quantized")->raw_data();
  const at::Tensor stored = at::from_blob(const_cast<char*>(raw.data()), {4, 3, 3, 3}, at::kByte).to(at::kLong);
  EXPECT_TRUE(at::equal(stored, codes + 100));
  std::filesystem::remove(f.path);
}

TEST(OnnxExport, RefusesWhatOnnxCannotHoldAndKeepsNoFile) {
  {
    Fixture f;  // a range above zero: offset 3, no uint8 zero point
    f.enc["activation_encodings"]["relu"] = {{"output", {{"0", entry(0.1, 3, 4)}}}};
    std::filesystem::remove(f.path);
    try {
      f.write();
      ADD_FAILURE() << "expected InputError";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("'relu'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("uint8"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(f.path));
  }
  {
    Fixture f;
    f.enc["activation_encodings"]["layer9.relu"] = {{"output", {{"0", entry(0.1, 0, 4)}}}};
    EXPECT_THROW(f.write(), InputError);
  }
  {
    Fixture f;  // a weight that is not on its encoding's grid is a bug, not bad input
    f.quantize_conv();
    f.weights[0] = f.weights[0] + 0.02;
    EXPECT_THROW(f.write(), InternalError);
  }
}
