#pragma once
// Element types that parameters may have on disk and on the wire, named as safetensors names them.
#include <cstddef>
#include <cstdint>
#include <string>

namespace zk0 {

// U8: bytes whose meaning a codec defines (core/codec/update_codec.h).
enum class DType : uint8_t { F32, BF16, F16, F64, I64, BOOL, U8 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);          // "F32", "BF16", ...
DType dtype_from_name(const std::string& name);  // throws std::invalid_argument on unknown names

}  // namespace zk0
