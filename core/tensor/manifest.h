#pragma once
// The manifest of a parameter set: per tensor its name, dtype, shape, byte length and SHA-256,
// and one digest over all of that. Canonical encoding (what the digest is taken over):
//
//   zk0-manifest-v1\n
//   <name>\t<DTYPE>\t<d0,d1,...>\t<byte length>\t<sha256 hex>\n   (one line per tensor, in order)
//
// Binding names, dtypes and shapes into the digest means a swapped, reshaped or retyped tensor
// changes it, unlike a hash of the concatenated values.
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor/dtype.h"
#include "core/tensor/hash.h"
#include "core/tensor/parameter_set.h"

namespace zk0 {

struct TensorEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t byte_length = 0;
  Sha256Digest sha256{};
};

struct Manifest {
  std::vector<TensorEntry> tensors;
  Sha256Digest digest{};

  std::string digest_hex() const { return to_hex(digest); }
  uint64_t total_bytes() const;
};

std::string canonical_encoding(const std::vector<TensorEntry>& tensors);
Sha256Digest manifest_digest(const std::vector<TensorEntry>& tensors);

// Hashes every tensor (spread over `threads` threads) and fills the digest.
Manifest build_manifest(const ParameterSet& parameters, int threads = 2);

// Throws std::runtime_error naming the first problem: a digest that does not match the entries,
// an entry whose byte length disagrees with dtype and shape, an invalid or repeated name.
void check_manifest_consistent(const Manifest& manifest);

// Throws std::runtime_error naming the tensor whose name, dtype or shape differs between the two.
void check_same_layout(const Manifest& expected, const Manifest& actual);

}  // namespace zk0
