#include "models/pickle.hpp"

#include <torch/torch.h>

#include <cstring>

#include "core/error.hpp"

namespace dsgq::models::pickle {
namespace {

using Kind = Value::Kind;

ValuePtr make(Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

class Unpickler {
 public:
  Unpickler(const std::string& data, const StorageLoader& loader, const std::string& where)
      : d_(data), loader_(loader), where_(where) {}

  ValuePtr run() {
    while (true) {
      if (pos_ >= d_.size()) fail("pickle data ends before its STOP opcode (truncated?)");
      const size_t op_pos = pos_;
      const uint8_t op = u8();
      switch (op) {
        case 0x80:
          u8();
          break;  // PROTO
        case 0x95:
          bytes(8);
          break;  // FRAME
        case '.':
          return pop();  // STOP
        case '(':
          marks_.push_back(stack_.size());
          break;
        case ')':
          push(make(Kind::tuple));
          break;
        case ']':
          push(make(Kind::list));
          break;
        case '}':
          push(make(Kind::dict));
          break;
        case 0x8f:
          push(make(Kind::set));
          break;
        case 'N':
          push(make(Kind::none));
          break;
        case 0x88:
          push_bool(true);
          break;
        case 0x89:
          push_bool(false);
          break;
        case 'J':
          push_int(static_cast<int32_t>(le(4)));
          break;
        case 'K':
          push_int(le(1));
          break;
        case 'M':
          push_int(le(2));
          break;
        case 0x8a:
          push_int(long_n(u8()));
          break;
        case 0x8b:
          push_int(long_n(static_cast<size_t>(le(4))));
          break;
        case 'G': {
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | u8();
          double x;
          std::memcpy(&x, &bits, 8);
          auto v = make(Kind::floating);
          v->f = x;
          push(v);
          break;
        }
        case 'X':
          push_str(Kind::string, static_cast<size_t>(le(4)));
          break;
        case 0x8c:
          push_str(Kind::string, u8());
          break;
        case 0x8d:
          push_str(Kind::string, static_cast<size_t>(le(8)));
          break;
        case 'T':
          push_str(Kind::string, static_cast<size_t>(le(4)));
          break;  // BINSTRING (py2 str)
        case 'U':
          push_str(Kind::string, u8());
          break;  // SHORT_BINSTRING
        case 'B':
          push_str(Kind::bytes, static_cast<size_t>(le(4)));
          break;
        case 'C':
          push_str(Kind::bytes, u8());
          break;
        case 0x8e:
          push_str(Kind::bytes, static_cast<size_t>(le(8)));
          break;
        case 'q':
          memo_put(le(1));
          break;
        case 'r':
          memo_put(le(4));
          break;
        case 0x94:
          memo_put(memo_.size());
          break;
        case 'p':
          memo_put(std::stoull(line()));
          break;
        case 'h':
          push(memo_get(le(1)));
          break;
        case 'j':
          push(memo_get(le(4)));
          break;
        case 'g':
          push(memo_get(std::stoull(line())));
          break;
        case 'c': {
          const std::string module = line();
          const std::string name = line();
          push_global(module + "." + name);
          break;
        }
        case 0x93: {
          auto name = pop();
          auto module = pop();
          push_global(module->s + "." + name->s);
          break;
        }
        case 't': {
          auto v = make(Kind::tuple);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {
          const int n = op - 0x84;
          auto v = make(Kind::tuple);
          v->items.resize(n);
          for (int k = n - 1; k >= 0; --k) v->items[k] = pop();
          push(v);
          break;
        }
        case 'l': {
          auto v = make(Kind::list);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 'd': {
          auto v = make(Kind::dict);
          auto items = pop_mark();
          for (size_t k = 0; k + 1 < items.size(); k += 2) v->entries.emplace_back(items[k], items[k + 1]);
          push(v);
          break;
        }
        case 'a': {
          auto x = pop();
          top(Kind::list, "APPEND")->items.push_back(x);
          break;
        }
        case 'e': {
          auto items = pop_mark();
          auto& l = top(Kind::list, "APPENDS")->items;
          l.insert(l.end(), items.begin(), items.end());
          break;
        }
        case 0x90: {  // ADDITEMS
          auto items = pop_mark();
          auto& l = top(Kind::set, "ADDITEMS")->items;
          l.insert(l.end(), items.begin(), items.end());
          break;
        }
        case 0x91: {  // FROZENSET
          auto v = make(Kind::set);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 's': {
          auto val = pop();
          auto key = pop();
          top(Kind::dict, "SETITEM")->entries.emplace_back(key, val);
          break;
        }
        case 'u': {
          auto items = pop_mark();
          auto d = top(Kind::dict, "SETITEMS");
          for (size_t k = 0; k + 1 < items.size(); k += 2) d->entries.emplace_back(items[k], items[k + 1]);
          break;
        }
        case 'Q':
          push(persistent_load(pop()));
          break;
        case 'R': {
          auto args = pop();
          auto callable = pop();
          push(reduce(callable, args));
          break;
        }
        case 0x81: {  // NEWOBJ
          auto args = pop();
          auto cls = pop();
          push(reduce(cls, args));
          break;
        }
        case 0x92: {  // NEWOBJ_EX
          pop();      // kwargs
          auto args = pop();
          auto cls = pop();
          push(reduce(cls, args));
          break;
        }
        case 'b': {  // BUILD: state is kept for opaque objects; dicts (OrderedDict._metadata) ignore it
          auto state = pop();
          auto obj = stack_.empty() ? nullptr : stack_.back();
          if (!obj) fail("BUILD with an empty stack");
          if (obj->kind == Kind::object) obj->items.push_back(state);
          break;
        }
        case '0':
          pop();
          break;  // POP
        case '2':
          push(stack_.empty() ? make(Kind::none) : stack_.back());
          break;  // DUP
        case '1':
          pop_mark();
          break;  // POP_MARK
        default: {
          char buf[96];
          std::snprintf(buf, sizeof buf, "unsupported pickle opcode 0x%02x at byte %zu", op, op_pos);
          fail(buf);
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const { throw InputError(where_ + ": " + msg); }

  uint8_t u8() {
    if (pos_ >= d_.size()) fail("pickle data ends in the middle of an opcode (truncated?)");
    return static_cast<uint8_t>(d_[pos_++]);
  }
  std::string bytes(size_t n) {
    if (n > d_.size() - pos_) fail("pickle data ends in the middle of a value (truncated?)");
    std::string s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  uint64_t le(int n) {
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v |= uint64_t(u8()) << (8 * k);
    return v;
  }
  int64_t long_n(size_t n) {
    if (n > 8) fail("integer wider than 64 bits in pickle");
    const std::string b = bytes(n);
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= uint64_t(static_cast<uint8_t>(b[k])) << (8 * k);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }
  std::string line() {
    const size_t end = d_.find('\n', pos_);
    if (end == std::string::npos) fail("pickle text field without newline (truncated?)");
    std::string s = d_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }
  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  ValuePtr pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow");
    auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail("pickle MARK missing");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  ValuePtr top(Kind k, const char* op) {
    if (stack_.empty() || stack_.back()->kind != k) fail(std::string(op) + " on an unexpected object");
    return stack_.back();
  }
  void push_bool(bool b) {
    auto v = make(Kind::boolean);
    v->i = b;
    push(v);
  }
  void push_int(int64_t i) {
    auto v = make(Kind::integer);
    v->i = i;
    push(v);
  }
  void push_str(Kind k, size_t n) {
    auto v = make(k);
    v->s = bytes(n);
    push(v);
  }
  void push_global(const std::string& name) {
    auto v = make(Kind::global);
    v->s = name;
    push(v);
  }
  void memo_put(uint64_t idx) {
    if (stack_.empty()) fail("pickle PUT with an empty stack");
    if (idx >= memo_.size()) memo_.resize(idx + 1);
    memo_[idx] = stack_.back();
  }
  ValuePtr memo_get(uint64_t idx) {
    if (idx >= memo_.size() || !memo_[idx]) fail("pickle GET of an unknown memo entry " + std::to_string(idx));
    return memo_[idx];
  }

  // ('storage', <class torch.FloatStorage>, key, location, numel)
  ValuePtr persistent_load(const ValuePtr& pid) {
    if (pid->kind != Kind::tuple || pid->items.size() < 5 || pid->items[0]->s != "storage" ||
        pid->items[1]->kind != Kind::global)
      fail("unsupported persistent id " + pid->describe() + "; expected ('storage', type, key, location, numel)");
    const std::string type = pid->items[1]->s;
    const std::string key = pid->items[2]->s;
    const std::string cache_key = key;
    for (auto& [k, v] : storages_)
      if (k == cache_key) return v;
    auto v = make(Kind::storage);
    v->s = key;
    const size_t dot = type.rfind('.');
    v->tensor = loader_(key, dot == std::string::npos ? type : type.substr(dot + 1), pid->items[4]->i);
    storages_.emplace_back(cache_key, v);
    return v;
  }

  static std::vector<int64_t> ints(const ValuePtr& t) {
    std::vector<int64_t> out;
    for (auto& x : t->items) out.push_back(x->i);
    return out;
  }

  ValuePtr reduce(const ValuePtr& callable, const ValuePtr& args) {
    const std::string name = callable->kind == Kind::global ? callable->s : "";
    if (name == "collections.OrderedDict") {
      auto v = make(Kind::dict);
      v->ordered = true;
      return v;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (args->items.size() < 4 || args->items[0]->kind != Kind::storage)
        fail("malformed " + name + " arguments " + args->describe());
      const at::Tensor& storage = args->items[0]->tensor;
      const int64_t offset = args->items[1]->i;
      const auto size = ints(args->items[2]);
      const auto stride = ints(args->items[3]);
      int64_t extent = 1;
      for (size_t k = 0; k < size.size(); ++k) extent += size[k] > 0 ? (size[k] - 1) * stride[k] : 0;
      bool empty = false;
      for (auto s : size) empty = empty || s == 0;
      if (!empty && offset + extent > storage.numel())
        fail("tensor of shape " + args->items[2]->describe() + " reaches past its storage of " +
             std::to_string(storage.numel()) + " elements");
      auto v = make(Kind::tensor);
      v->tensor = empty ? at::empty(size, storage.options())
                        : storage.as_strided(size, stride, offset).clone(at::MemoryFormat::Contiguous);
      return v;
    }
    // LibTorch's own pickler (torch::pickle_save) tags typed containers: restore_type_tag(value, "Dict[str, Tensor]").
    if (name == "torch.jit._pickle.restore_type_tag" || name.rfind("torch.jit._pickle.build_", 0) == 0) {
      if (args->items.empty()) fail("malformed " + name + " arguments");
      return args->items[0];
    }
    if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
      if (args->items.empty() || args->items[0]->kind != Kind::tensor) fail("malformed " + name + " arguments");
      return args->items[0];
    }
    auto v = make(Kind::object);
    v->items = {callable, args};
    return v;
  }

  const std::string& d_;
  const StorageLoader& loader_;
  const std::string& where_;
  size_t pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::vector<ValuePtr> memo_;
  std::vector<std::pair<std::string, ValuePtr>> storages_;
};

}  // namespace

std::string Value::describe() const {
  switch (kind) {
    case Kind::none:
      return "None";
    case Kind::boolean:
      return i ? "True" : "False";
    case Kind::integer:
      return std::to_string(i);
    case Kind::floating:
      return std::to_string(f);
    case Kind::string:
      return "'" + s + "'";
    case Kind::bytes:
      return "bytes[" + std::to_string(s.size()) + "]";
    case Kind::tuple:
    case Kind::list: {
      std::string out = kind == Kind::tuple ? "(" : "[";
      for (size_t k = 0; k < items.size() && k < 6; ++k) out += (k ? ", " : "") + items[k]->describe();
      if (items.size() > 6) out += ", ...";
      return out + (kind == Kind::tuple ? ")" : "]");
    }
    case Kind::dict:
      return std::string(ordered ? "OrderedDict" : "dict") + " of " + std::to_string(entries.size());
    case Kind::set:
      return "set of " + std::to_string(items.size());
    case Kind::global:
      return s;
    case Kind::storage:
      return "storage " + s;
    case Kind::tensor:
      return "tensor";
    case Kind::object:
      return "object of class " + (items.empty() ? std::string("?") : items[0]->describe());
  }
  return "?";
}

ValuePtr unpickle(const std::string& data, const StorageLoader& load_storage, const std::string& where) {
  return Unpickler(data, load_storage, where).run();
}

}  // namespace dsgq::models::pickle
