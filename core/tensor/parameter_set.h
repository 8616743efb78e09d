#pragma once
// Named tensors as raw bytes: what travels between aggregator and workers, what FedAvg blends and
// what checkpoints hold. Kept free of LibTorch so that transport and aggregation stay light.
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor/buffer.h"
#include "core/tensor/dtype.h"

namespace zk0 {

struct Tensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  Buffer bytes;

  int64_t numel() const;
  template <typename T>
  T* as() { return reinterpret_cast<T*>(bytes.data()); }
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(bytes.data()); }
};

// Bounds on what a manifest, a safetensors header or a checkpoint may declare: shapes come from
// files and peers, and their product must neither overflow nor ask for absurd allocations.
constexpr size_t kMaxTensorRank = 8;
constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 36;  // 64 GiB

// dtype_size(dtype) times the product of `shape`, checked: throws std::invalid_argument naming
// the problem (a negative dimension, a rank above kMaxTensorRank, more than kMaxTensorBytes).
uint64_t tensor_bytes(DType dtype, const std::vector<int64_t>& shape);

// Allocates a tensor with uninitialised storage sized for dtype and shape (checked as above).
Tensor make_tensor(std::string name, DType dtype, std::vector<int64_t> shape);

class ParameterSet {
 public:
  std::vector<Tensor> tensors;

  const Tensor* find(const std::string& name) const;
  Tensor* find(const std::string& name);
  const Tensor& at(const std::string& name) const;  // throws std::out_of_range naming the tensor
  uint64_t total_bytes() const;
  int64_t total_elements() const;
};

std::string shape_string(const std::vector<int64_t>& shape);  // "[2,3]"

}  // namespace zk0
