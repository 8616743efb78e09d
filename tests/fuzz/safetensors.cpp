// A safetensors file (a checkpoint, a pretrained model from the Hub): an error naming the
// problem, never a crash, an overflow or an allocation the header alone asked for.
#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

#include "core/tensor/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    std::map<std::string, std::string> metadata;
    const zk0::ParameterSet set = zk0::decode_safetensors(bytes, "fuzz.safetensors", &metadata);
    // What decodes re-encodes to a file that decodes to the same tensors.
    const zk0::ParameterSet again = zk0::decode_safetensors(zk0::encode_safetensors(set, metadata), "again");
    if (again.tensors.size() != set.tensors.size()) __builtin_trap();
  } catch (const std::runtime_error&) {
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
