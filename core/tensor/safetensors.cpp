#include "core/tensor/safetensors.h"
#include "core/util/json_number.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/util/fs.h"

namespace zk0 {
using nlohmann::json;

std::string encode_safetensors(const ParameterSet& parameters, const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : parameters.tensors) {
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string head = header.dump();
  head.append((8 - head.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  std::string out;
  out.reserve(8 + head.size() + offset);
  const uint64_t n = head.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += head;
  for (const auto& t : parameters.tensors)
    out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return out;
}

void write_safetensors(const std::string& path, const ParameterSet& parameters,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, encode_safetensors(parameters, metadata));
}

namespace {

// Where the bytes come from: a file (read piece by piece, so a 1 GB checkpoint is not held twice)
// or memory.
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t size() const = 0;
  virtual bool read(uint64_t offset, void* out, uint64_t n) = 0;
};

class FileSource final : public Source {
 public:
  explicit FileSource(const std::string& path) : in_(path, std::ios::binary | std::ios::ate) {
    if (!in_) throw std::runtime_error(path + ": cannot open");
    size_ = static_cast<uint64_t>(in_.tellg());
  }
  uint64_t size() const override { return size_; }
  bool read(uint64_t offset, void* out, uint64_t n) override {
    in_.seekg(static_cast<std::streamoff>(offset));
    return static_cast<bool>(in_.read(static_cast<char*>(out), static_cast<std::streamsize>(n)));
  }

 private:
  std::ifstream in_;
  uint64_t size_ = 0;
};

class MemorySource final : public Source {
 public:
  explicit MemorySource(const std::string& bytes) : bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }
  bool read(uint64_t offset, void* out, uint64_t n) override {
    if (offset > bytes_.size() || n > bytes_.size() - offset) return false;
    std::memcpy(out, bytes_.data() + offset, n);
    return true;
  }

 private:
  const std::string& bytes_;
};

ParameterSet decode(Source& source, const std::string& path, std::map<std::string, std::string>* metadata) {
  const uint64_t file_size = source.size();
  auto fail = [&](const std::string& why) -> std::runtime_error {
    return std::runtime_error(path + ": " + why);
  };
  uint8_t len_bytes[8];
  if (file_size < 8 || !source.read(0, len_bytes, 8)) throw fail("truncated header length");
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(len_bytes[i]) << (8 * i);
  if (header_len > file_size - 8 || header_len > (100u << 20)) throw fail("header length out of range");
  std::string head(header_len, '\0');
  if (!source.read(8, head.data(), header_len)) throw fail("truncated header");
  json header;
  try {
    header = json::parse(head);
  } catch (const std::exception& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw fail("header is not a JSON object");
  const uint64_t data_size = file_size - 8 - header_len;

  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw fail("__metadata__ is not an object");
      if (metadata)
        for (auto m = it.value().begin(); m != it.value().end(); ++m)
          (*metadata)[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    try {
      if (!it.value().is_object()) throw std::runtime_error("not an object");
      Entry e{it.key(), dtype_from_name(it.value().at("dtype").get<std::string>()),
              json_integers(it.value().at("shape")),
              json_unsigned(it.value().at("data_offsets").at(0)),
              json_unsigned(it.value().at("data_offsets").at(1))};
      const uint64_t expected = tensor_bytes(e.dtype, e.shape);
      if (e.end < e.begin || e.end > data_size) throw std::runtime_error("data offsets past the end of the file");
      if (e.end - e.begin != expected) throw std::runtime_error("byte length does not match dtype and shape");
      entries.push_back(std::move(e));
    } catch (const std::exception& ex) {
      throw fail("tensor '" + it.key() + "': " + ex.what());
    }
  }
  // Tensors in file order, the order LeRobot and PyTorch wrote them in.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i].begin < entries[i - 1].end)
      throw fail("tensors '" + entries[i - 1].name + "' and '" + entries[i].name + "' overlap");

  ParameterSet out;
  const uint64_t data_start = 8 + header_len;
  for (auto& e : entries) {
    Tensor t = make_tensor(e.name, e.dtype, e.shape);
    if (t.bytes.size() && !source.read(data_start + e.begin, t.bytes.data(), t.bytes.size()))
      throw fail("truncated data for tensor '" + e.name + "'");
    out.tensors.push_back(std::move(t));
  }
  return out;
}

}  // namespace

ParameterSet read_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  FileSource source(path);
  return decode(source, path, metadata);
}

ParameterSet decode_safetensors(const std::string& bytes, const std::string& name, std::map<std::string, std::string>* metadata) {
  MemorySource source(bytes);
  return decode(source, name, metadata);
}

}  // namespace zk0
