#include "core/tensor/dtype.h"

#include <stdexcept>

namespace zk0 {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::F64: return 8;
    case DType::I64: return 8;
    case DType::BOOL: return 1;
    case DType::U8: return 1;
  }
  throw std::invalid_argument("unknown dtype");
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
    case DType::BOOL: return "BOOL";
    case DType::U8: return "U8";
  }
  throw std::invalid_argument("unknown dtype");
}

DType dtype_from_name(const std::string& name) {
  if (name == "F32") return DType::F32;
  if (name == "BF16") return DType::BF16;
  if (name == "F16") return DType::F16;
  if (name == "F64") return DType::F64;
  if (name == "I64") return DType::I64;
  if (name == "BOOL") return DType::BOOL;
  if (name == "U8") return DType::U8;
  throw std::invalid_argument("unsupported dtype '" + name + "'");
}

}  // namespace zk0
