// A frozen-prefix cache entry read back from disk: served only when every check holds, else a
// CorruptCacheEntry; never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/policy/smolvla/cache_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    zk0::smolvla::decode_cache_entry(bytes, "k", "fuzz-entry");
  } catch (const zk0::smolvla::CorruptCacheEntry&) {
  }
  return 0;
}
