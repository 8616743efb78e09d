#pragma once
// The policy interface that the worker trains and the aggregator evaluates and checkpoints.
// Parameters carry their checkpoint names; the trainable ones are what travels each round.
#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/data/dataset.h"
#include "core/spec/federation_spec.h"
#include "core/tensor/parameter_set.h"

namespace zk0 {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// What a policy's cache of frozen computations (SmolVLA's prefix cache) has done, for metrics.
struct PrefixCacheStats {
  int64_t memory_hits = 0, disk_hits = 0, misses = 0;
  int64_t corrupt_entries = 0;  // disk entries whose checksum or key did not verify: dropped, recomputed
  int64_t memory_bytes = 0, disk_bytes = 0, memory_entries = 0, disk_entries = 0;
};

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string type() const = 0;
  virtual int64_t chunk_size() const = 0;
  virtual bool uses_images() const = 0;

  // Every parameter in checkpoint order, and the subsets that train and stay frozen.
  virtual NamedTensors parameters() = 0;
  NamedTensors trainable_parameters();
  NamedTensors frozen_parameters();
  bool is_trainable(const std::string& name) const;

  // Flow-matching loss of a normalised batch. Noise and time come from `generator`, so that a
  // fixed generator seed gives a fixed loss (deterministic evaluation).
  virtual at::Tensor loss(const Batch& batch, at::Generator generator) = 0;
  // Euler integration from noise at t=1 to an action chunk [B, chunk, action_dim] (normalised).
  virtual at::Tensor sample_actions(const Batch& batch, at::Generator generator) = 0;

  virtual void to(const at::Device& device) = 0;
  virtual void set_training(bool training) = 0;
  at::Device device();

  // The policy's configuration as written to config.json, in its keys' order.
  virtual nlohmann::ordered_json config_json() const = 0;

  // The statistics inputs are normalised with (on the aggregator: its evaluation dataset's), for
  // policies whose checkpoints carry them; the others ignore them.
  virtual void set_normalization(const FeatureStats& state, const FeatureStats& action) {}
  // Files a checkpoint folder holds beside model.safetensors and config.json.
  virtual void write_extra_files(const std::string& dir) {}
  // What the policy's prefix cache has done, if it has one.
  virtual std::optional<PrefixCacheStats> prefix_cache_stats() const { return std::nullopt; }
  // Makes this policy compute with `other`'s frozen weights (and share what is computed from
  // them alone, such as SmolVLA's prefix cache) instead of its own copy, which is freed: the
  // simulation runtime's policies hold the backbone once. Same type and configuration, same device.
  virtual void share_frozen(Policy& other);

  // model.safetensors' content: every parameter, float32 unless the policy keeps other dtypes.
  virtual ParameterSet checkpoint_tensors();
  // Loads a model.safetensors; throws naming a missing tensor or a shape that differs.
  virtual void load_checkpoint(const ParameterSet& checkpoint);

 protected:
  std::vector<std::string> trainable_groups_;  // parameter name prefixes that train
};

// Builds the policy the spec names: its configuration, its pretrained weights if any, and which
// parameter groups train. Throws SpecError with `spec.policy...` field paths for bad config.
std::unique_ptr<Policy> make_policy(const PolicySpec& spec);

// A copy of one tensor with its own dtype (F32, BF16, F16, F64, I64 or BOOL).
Tensor copy_tensor(const std::string& name, const at::Tensor& tensor);

at::ScalarType aten_dtype(DType dtype);
// An owning tensor with the bytes, dtype and shape of `tensor`.
at::Tensor to_aten(const Tensor& tensor);

// Copies of the named tensors as float32 bytes (what goes on the wire), and back.
ParameterSet to_parameter_set(const NamedTensors& tensors);
// Throws naming the tensor if a name is missing or a shape differs; copies under no_grad.
void load_parameter_set(const NamedTensors& into, const ParameterSet& from);

// Writes model.safetensors (all parameters) and config.json into `dir`, atomically per file.
void save_pretrained(Policy& policy, const std::string& dir);

}  // namespace zk0
