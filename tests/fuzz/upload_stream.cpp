// What a client sends in UploadUpdate after its header: a manifest and chunks, here any sequence
// of protobuf messages. The receiver checks them against the aggregator's layout before it
// allocates; every failure is a TransferError.
//
// Input: repeated [2-byte little-endian length][that many bytes: one UploadMessage].
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/transport/parameter_stream.h"
#include "trainable_layout.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zk0::ParameterReceiver receiver(zk0::fuzz::trainable_layout(), 1);
  try {
    for (size_t at = 0; at + 2 <= size;) {
      const size_t n = data[at] | (static_cast<size_t>(data[at + 1]) << 8);
      at += 2;
      if (n > size - at) break;
      zk0::v1::UploadMessage msg;
      if (!msg.ParseFromArray(data + at, static_cast<int>(n))) break;
      at += n;
      if (msg.has_manifest()) receiver.on_manifest(msg.manifest());
      else if (msg.has_chunk()) receiver.on_chunk(msg.chunk());
    }
    receiver.finish();
  } catch (const zk0::TransferError&) {
  }
  return 0;
}
