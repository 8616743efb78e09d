#include "core/tensor/parameter_set.h"

#include <stdexcept>

namespace zk0 {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint64_t tensor_bytes(DType dtype, const std::vector<int64_t>& shape) {
  if (shape.size() > kMaxTensorRank)
    throw std::invalid_argument("rank " + std::to_string(shape.size()) + " exceeds " + std::to_string(kMaxTensorRank));
  uint64_t bytes = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("negative dimension in " + shape_string(shape));
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes) || bytes > kMaxTensorBytes)
      throw std::invalid_argument(std::string(dtype_name(dtype)) + shape_string(shape) + " is larger than " + std::to_string(kMaxTensorBytes) +
                                  " bytes");
  }
  return bytes;
}

Tensor make_tensor(std::string name, DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.bytes = Buffer(static_cast<size_t>(tensor_bytes(dtype, shape)));
  t.shape = std::move(shape);
  return t;
}

const Tensor* ParameterSet::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

Tensor* ParameterSet::find(const std::string& name) {
  for (auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const Tensor& ParameterSet::at(const std::string& name) const {
  if (const Tensor* t = find(name)) return *t;
  throw std::out_of_range("no tensor named '" + name + "'");
}

uint64_t ParameterSet::total_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.bytes.size();
  return n;
}

int64_t ParameterSet::total_elements() const {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.numel();
  return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace zk0
