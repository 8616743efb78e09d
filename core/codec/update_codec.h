#pragma once
// Codecs for model updates on the wire (spec.transport.compression). Each float32 tensor of an
// update (a delta from the round's global) becomes one encoded tensor of the same name:
//
//   bf16  BF16, the tensor's shape: each value rounded to nearest even. 2 bytes per value.
//   int8  U8 [4·blocks + n]: per block of `block_size` values its absmax/127 (float32), then
//         each value as round(x / scale), an int8. 1 + 4/block_size bytes per value.
//   topk  U8 [4 + 4·k + gaps]: k, the k values of largest magnitude (float32), then their
//         indices as LEB128 varints of the gap to the previous index. k = ceil(fraction · n).
//
// Encoded tensors travel through the ordinary manifest and chunk stream (their SHA-256 in the
// manifest), and the manifest's encoding line binds the codec, its parameters and the digest of
// the decoded tensors (core/tensor/manifest.h), so a receiver checks both ends.
//
// Encoding and decoding run over `threads` threads, block by block, at memory speed.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/tensor/manifest.h"
#include "core/tensor/parameter_set.h"

namespace zk0 {

enum class CodecKind { None, Bf16, Int8, TopK };

struct CodecSettings {
  CodecKind kind = CodecKind::None;
  int64_t block_size = 0;  // int8 only
  double fraction = 0;     // topk only, in (0, 1]
  // The canonical form of the codec and its parameters, bound into the manifest's digest:
  // "bf16", "int8 block_size=2048", "topk fraction=0.01". Empty for none.
  std::string describe() const;
  bool active() const { return kind != CodecKind::None; }
};

const char* codec_name(CodecKind kind);
CodecKind codec_from_name(const std::string& name);  // throws std::invalid_argument on unknown names
// Parses CodecSettings::describe()'s output back; throws std::invalid_argument on anything else.
CodecSettings codec_from_description(const std::string& description);

// An encoded update that does not decode: names the codec and the tensor.
class CodecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bytes of one tensor of `numel` values, encoded: exact for bf16 and int8, the most topk can take.
uint64_t encoded_bytes_bound(const CodecSettings& codec, int64_t numel);

// Throws std::runtime_error naming the tensor unless `actual` is the manifest of `plain`'s layout
// encoded with `codec`: the codec bound in its encoding line, the names in order, each tensor's
// dtype and shape (topk: a length within its bound).
void check_encoded_layout(const Manifest& plain, const CodecSettings& codec, const Manifest& actual);

// Encodes every tensor of `delta` (all float32). Throws CodecError on a non-finite value.
ParameterSet encode_update(const ParameterSet& delta, const CodecSettings& codec, int threads);

// Decodes `encoded` into float32 tensors laid out as `layout` (names and shapes, in order).
// Throws CodecError naming the codec and tensor for anything malformed: a missing or extra
// tensor, a length the codec cannot have, an index out of range or out of order, a non-finite
// value or scale.
ParameterSet decode_update(const ParameterSet& encoded, const Manifest& layout, const CodecSettings& codec, int threads);

}  // namespace zk0
