#include "models/checkpoint.hpp"

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <cstring>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "models/pickle.hpp"

namespace dsgq::models {
namespace {

using pickle::Value;
using pickle::ValuePtr;

at::ScalarType storage_dtype(const std::string& type, const std::string& where) {
  static const std::pair<const char*, at::ScalarType> kTypes[] = {
      {"FloatStorage", at::kFloat},       {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong},     {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort},       {"CharStorage", at::kChar},     {"ByteStorage", at::kByte},
      {"BoolStorage", at::kBool}};
  for (const auto& [name, dtype] : kTypes)
    if (type == name) return dtype;
  throw InputError(
      where + ": unsupported tensor storage type '" + type +
      "'; expected a float, integer or bool storage (quantized/complex tensors are not state_dict weights dsgq reads)");
}

bool is_tensor_dict(const ValuePtr& v) {
  if (v->kind != Value::Kind::dict || v->entries.empty()) return false;
  for (auto& [k, x] : v->entries)
    if (k->kind != Value::Kind::string || x->kind != Value::Kind::tensor) return false;
  return true;
}

// Serves the zip reader from the bytes already in memory (they outlive the reader).
class StringAdapter : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit StringAdapter(const std::string& bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* what) const override {
    if (pos >= bytes_.size()) return 0;
    const size_t take = std::min<size_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, take);
    return take;
  }

 private:
  const std::string& bytes_;
};

std::string container_name(const ValuePtr& v) { return v->ordered ? "OrderedDict" : "dict"; }

}  // namespace

std::string shape_string(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? "," : "") + std::to_string(t.size(d));
  return s + "]";
}

namespace {

// The file's bytes, with a clear message for missing, empty, legacy and non-zip files.
std::string read_zip_bytes(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.empty())
    throw InputError(path + ": file is empty (0 bytes); expected a torch.save checkpoint (.pt zip archive)");
  if (bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x80 && static_cast<uint8_t>(bytes[1]) <= 5)
    throw InputError(path +
                     ": is a legacy (pre-1.6, non-zip) torch.save file; expected the zip format: re-save it "
                     "in Python with torch.save(torch.load(path), path)");
  if (bytes.compare(0, 4, std::string("PK\x03\x04", 4)) != 0) {
    char head[32];
    std::snprintf(head, sizeof head, "%02x %02x %02x %02x", bytes.size() > 0 ? uint8_t(bytes[0]) : 0,
                  bytes.size() > 1 ? uint8_t(bytes[1]) : 0, bytes.size() > 2 ? uint8_t(bytes[2]) : 0,
                  bytes.size() > 3 ? uint8_t(bytes[3]) : 0);
    throw InputError(path + ": is not a zip archive (starts with bytes " + head +
                     "); expected a torch.save checkpoint (zip, starts with 50 4b 03 04)");
  }
  return bytes;
}

// The first line of a c10::Error.
std::string first_line(const c10::Error& e) {
  const std::string what = e.what_without_backtrace();
  return what.substr(0, what.find('\n'));
}

// The unpickled data.pkl of the archive, its tensors read from the archive's storage records.
ValuePtr unpickle_archive(const std::string& path, const std::string& bytes) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  std::string pkl;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(std::make_shared<StringAdapter>(bytes));
    if (!reader->hasRecord("data.pkl"))
      throw InputError(path +
                       ": zip archive has no data.pkl; expected a torch.save checkpoint (is this "
                       "TorchScript? use torch.save(model.state_dict()))");
    auto [ptr, size] = reader->getRecord("data.pkl");
    pkl.assign(static_cast<const char*>(ptr.get()), size);
  } catch (const c10::Error& e) {
    throw InputError(path + ": truncated or corrupt zip archive (" + first_line(e) +
                     "); expected a complete torch.save checkpoint");
  }
  auto loader = [&](const std::string& key, const std::string& type, int64_t numel) -> at::Tensor {
    const at::ScalarType dtype = storage_dtype(type, path);
    const std::string rec = "data/" + key;
    try {
      auto [ptr, size] = reader->getRecord(rec);
      const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype));
      if (static_cast<int64_t>(size) != numel * elem)
        throw InputError(path + ": storage " + rec + " holds " + std::to_string(size) + " bytes; expected " +
                         std::to_string(numel) + " x " + std::to_string(elem));
      at::Tensor t = at::empty({numel}, at::TensorOptions().dtype(dtype));
      std::memcpy(t.data_ptr(), ptr.get(), size);
      return t;
    } catch (const c10::Error& e) {
      throw InputError(path + ": cannot read storage record " + rec + " (" + first_line(e) + ")");
    }
  };
  return pickle::unpickle(pkl, loader, path + ": data.pkl");
}

// The name -> tensor dict inside `root`: root itself, or its state_dict / model_state_dict / model / net entry.
ValuePtr find_state_dict(const ValuePtr& root, const std::string& path, std::string& container) {
  if (is_tensor_dict(root)) {
    container = container_name(root);
    return root;
  }
  if (root->kind != Value::Kind::dict)
    throw InputError(path + ": top-level object is " + root->describe() +
                     "; expected a state_dict (dict or OrderedDict of name -> tensor)");
  for (const char* key : {"state_dict", "model_state_dict", "model", "net"})
    for (auto& [k, v] : root->entries)
      if (k->kind == Value::Kind::string && k->s == key && is_tensor_dict(v)) {
        container = container_name(root) + "['" + key + "'] (" + container_name(v) + ")";
        return v;
      }
  std::string bad;
  for (auto& [k, v] : root->entries)
    if (v->kind != Value::Kind::tensor) {
      bad = k->describe() + " is " + v->describe();
      break;
    }
  throw InputError(path + ": is not a state_dict: entry " + (bad.empty() ? std::string("?") : bad) +
                   "; expected a dict of name -> tensor (or a checkpoint with a 'state_dict' entry)");
}

}  // namespace

Checkpoint read_checkpoint(const std::string& path) {
  const ValuePtr root = unpickle_archive(path, read_zip_bytes(path));
  Checkpoint ck;
  ck.path = path;
  const ValuePtr sd = find_state_dict(root, path, ck.container);
  bool all_module = true;
  for (auto& [k, v] : sd->entries) all_module = all_module && k->s.rfind("module.", 0) == 0;
  ck.stripped_module_prefix = all_module;
  for (auto& [k, v] : sd->entries) ck.tensors.push_back({all_module ? k->s.substr(7) : k->s, v->tensor});
  return ck;
}

void write_checkpoint(const std::string& path, const std::vector<NamedTensor>& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& nt : tensors) dict.insert(nt.name, nt.tensor.to(at::kCPU).contiguous());
  const std::vector<char> data = torch::pickle_save(dict);
  atomic_write_file(path, std::string(data.begin(), data.end()));
}

}  // namespace dsgq::models
