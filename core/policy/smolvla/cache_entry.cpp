#include "core/policy/smolvla/cache_entry.h"

#include <map>

#include "core/tensor/hash.h"
#include "core/tensor/safetensors.h"

namespace zk0::smolvla {

namespace {

// SHA-256 over an entry's tensors in file order, bound to the key it is stored under.
std::string entry_checksum(const std::string& key, const ParameterSet& set) {
  Sha256 h;
  h.update(key.data(), key.size());
  for (const auto& t : set.tensors) {
    h.update(t.name.data(), t.name.size());
    h.update(t.bytes.data(), t.bytes.size());
  }
  return to_hex(h.finish());
}

}  // namespace

std::string encode_cache_entry(const std::string& key, const ParameterSet& tensors) {
  return encode_safetensors(tensors, {{"key", key}, {"sha256", entry_checksum(key, tensors)}});
}

ParameterSet decode_cache_entry(const std::string& bytes, const std::string& key, const std::string& name) {
  std::map<std::string, std::string> meta;
  ParameterSet set;
  try {
    set = decode_safetensors(bytes, name, &meta);
  } catch (const std::exception& e) {
    throw CorruptCacheEntry(e.what());
  }
  if (meta["key"] != key) throw CorruptCacheEntry(name + ": stored under another key");
  if (meta["sha256"] != entry_checksum(key, set)) throw CorruptCacheEntry(name + ": payload does not match its checksum");
  size_t layers = 0;
  while (set.find("key." + std::to_string(layers)) && set.find("value." + std::to_string(layers))) ++layers;
  const Tensor* pad = set.find("pad_mask");
  if (layers == 0 || !pad || set.tensors.size() != 2 * layers + 1 || pad->dtype != DType::BOOL || pad->shape.size() != 1)
    throw CorruptCacheEntry(name + ": not the layout of a prefix cache entry");
  for (size_t l = 0; l < layers; ++l) {
    const Tensor& k = set.at("key." + std::to_string(l));
    const Tensor& v = set.at("value." + std::to_string(l));
    if (k.shape.size() != 3 || k.shape != v.shape || k.dtype != v.dtype || k.shape[0] != pad->shape[0])
      throw CorruptCacheEntry(name + ": layer " + std::to_string(l) + " has keys and values of another shape");
  }
  return set;
}

}  // namespace zk0::smolvla
