#pragma once
// Internal to src/models: a small unpickler for the subset of Python's pickle that torch.save uses for a
// state_dict (protocols 2-5: dicts, OrderedDicts, tuples, lists, numbers, strings, persistent storage ids, tensor
// rebuild functions). Unknown classes become opaque objects; only tensors are materialized.
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace dsgq::models::pickle {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  enum class Kind {
    none,
    boolean,
    integer,
    floating,
    string,
    bytes,
    tuple,
    list,
    dict,
    set,
    global,
    storage,
    tensor,
    object
  };
  Kind kind = Kind::none;
  int64_t i = 0;
  double f = 0;
  std::string s;                                       // string/bytes; global: "module.name"; storage: record key
  std::vector<ValuePtr> items;                         // tuple, list, set; object: [class, args]
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // dict
  bool ordered = false;                                // dict built by collections.OrderedDict
  at::Tensor tensor;                                   // tensor; storage: the storage as a flat tensor of its dtype
  std::string describe() const;                        // short description for messages
};

// Returns the storage's bytes for a persistent id (key, dtype name such as "FloatStorage", number of elements).
using StorageLoader = std::function<at::Tensor(const std::string& key, const std::string& storage_type, int64_t numel)>;

// Throws InputError("<where>: ...") on malformed or unsupported data.
ValuePtr unpickle(const std::string& data, const StorageLoader& load_storage, const std::string& where);

}  // namespace dsgq::models::pickle
