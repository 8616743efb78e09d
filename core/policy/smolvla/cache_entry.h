#pragma once
// The on-disk form of a frozen-prefix cache entry (prefix_cache.h): safetensors whose metadata
// carries the key the entry was stored under and a SHA-256 over its tensors' names and bytes.
// Torch-free, so that the parser of these files can be fuzzed on its own.
#include <stdexcept>
#include <string>

#include "core/tensor/parameter_set.h"

namespace zk0::smolvla {

class CorruptCacheEntry : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string encode_cache_entry(const std::string& key, const ParameterSet& tensors);

// The tensors, verified: well-formed safetensors, stored under `key`, checksum intact, and the
// layout an entry has (key.L and value.L pairs from 0, then pad_mask). Throws CorruptCacheEntry
// saying which check failed; `name` stands for the file.
ParameterSet decode_cache_entry(const std::string& bytes, const std::string& key, const std::string& name);

}  // namespace zk0::smolvla
