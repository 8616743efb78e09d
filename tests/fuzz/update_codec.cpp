// An encoded update as it arrives from a worker (transport.compression): bytes whose meaning the
// codec defines. decode_update must refuse anything malformed with a CodecError, never read out
// of bounds or trust a count or an index.
//
// Input: [codec: 0 bf16, 1 int8 with block_size 4, 2 topk with fraction 0.25], then per tensor of
// the layout [2-byte little-endian length][that many bytes].
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/codec/update_codec.h"
#include "trainable_layout.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const zk0::CodecSettings codecs[] = {{zk0::CodecKind::Bf16}, {zk0::CodecKind::Int8, 4}, {zk0::CodecKind::TopK, 0, 0.25}};
  const zk0::CodecSettings& codec = codecs[data[0] % 3];
  zk0::ParameterSet encoded;
  size_t at = 1;
  for (const auto& entry : zk0::fuzz::trainable_layout().tensors) {
    if (at + 2 > size) return 0;
    const size_t n = data[at] | (static_cast<size_t>(data[at + 1]) << 8);
    at += 2;
    if (n > size - at) return 0;
    const bool bf16 = codec.kind == zk0::CodecKind::Bf16;
    if (bf16 && n % 2) return 0;
    zk0::Tensor t = zk0::make_tensor(entry.name, bf16 ? zk0::DType::BF16 : zk0::DType::U8, {static_cast<int64_t>(bf16 ? n / 2 : n)});
    if (n) std::memcpy(t.bytes.data(), data + at, n);
    at += n;
    encoded.tensors.push_back(std::move(t));
  }
  try {
    zk0::decode_update(encoded, zk0::fuzz::trainable_layout(), codec, 1);
  } catch (const zk0::CodecError&) {
  }
  return 0;
}
