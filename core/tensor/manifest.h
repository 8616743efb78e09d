#pragma once
// The manifest of a parameter set: per tensor its name, dtype, shape, byte length and SHA-256,
// and one digest over all of that. Canonical encoding (what the digest is taken over):
//
//   zk0-manifest-v1\n
//   <name>\t<DTYPE>\t<d0,d1,...>\t<byte length>\t<sha256 hex>\n   (one line per tensor, in order)
//
//   encoding\t<codec>\t<sha256 hex of the decoded set's manifest digest>\n   (encoded sets only)
//
// Binding names, dtypes and shapes into the digest means a swapped, reshaped or retyped tensor
// changes it, unlike a hash of the concatenated values. An encoded set (core/codec) binds its
// codec with its parameters and the digest of what it decodes to, so the receiver checks the
// bytes that travelled and the tensors it reconstructs against one signed-off digest.
#include <cstdint>
#include <optional>
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

struct ManifestEncoding {
  std::string codec;  // CodecSettings::describe(): "int8 block_size=4096"
  Sha256Digest decoded_digest{};
  bool operator==(const ManifestEncoding& o) const { return codec == o.codec && decoded_digest == o.decoded_digest; }
};

struct Manifest {
  std::vector<TensorEntry> tensors;
  std::optional<ManifestEncoding> encoding;
  Sha256Digest digest{};

  std::string digest_hex() const { return to_hex(digest); }
  uint64_t total_bytes() const;
};

std::string canonical_encoding(const std::vector<TensorEntry>& tensors, const std::optional<ManifestEncoding>& encoding = std::nullopt);
Sha256Digest manifest_digest(const std::vector<TensorEntry>& tensors, const std::optional<ManifestEncoding>& encoding = std::nullopt);

// Hashes every tensor (spread over `threads` threads) and fills the digest.
Manifest build_manifest(const ParameterSet& parameters, int threads = 2);
// Names, dtypes, shapes and byte lengths, nothing hashed (no SHA-256, no digest): a layout to
// decode into or compare against, never a manifest to send or check.
Manifest layout_of(const ParameterSet& parameters);
// The manifest of an encoded set: build_manifest's, with `encoding` bound into the digest.
Manifest build_encoded_manifest(const ParameterSet& encoded, ManifestEncoding encoding, int threads = 2);

// Throws std::runtime_error naming the first problem: a digest that does not match the entries,
// an entry whose byte length disagrees with dtype and shape, an invalid or repeated name.
void check_manifest_consistent(const Manifest& manifest);

// Throws std::runtime_error naming the tensor whose name, dtype or shape differs between the two.
void check_same_layout(const Manifest& expected, const Manifest& actual);

}  // namespace zk0
