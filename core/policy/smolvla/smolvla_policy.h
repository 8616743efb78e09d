#pragma once
// SmolVLA behind zk0's policy interface: LeRobot's preprocessing (image resize and padding,
// prompt tokenization, state/action padding), the flow-matching loss with the frozen-prefix cache,
// sampling, and checkpoints in LeRobot's names and dtypes.
#include <memory>
#include <optional>

#include "core/policy/policy.h"
#include "core/policy/smolvla/model.h"
#include "core/policy/smolvla/prefix_cache.h"
#include "core/policy/smolvla/processor_files.h"
#include "core/tokenizer/tokenizer.h"

namespace zk0::smolvla {

class SmolVLAPolicy final : public Policy {
 public:
  SmolVLAPolicy(const Config& config, std::vector<std::string> trainable_groups);

  std::string type() const override { return "smolvla"; }
  int64_t chunk_size() const override { return model_.config().chunk_size; }
  bool uses_images() const override { return true; }
  NamedTensors parameters() override { return model_.parameters(); }
  at::Tensor loss(const Batch& batch, at::Generator generator) override;
  at::Tensor sample_actions(const Batch& batch, at::Generator generator) override;
  void to(const at::Device& device) override;
  // Frozen weights in `frozen_dtype` (trainable ones stay float32): `zk0 policy run` computes in float32 on CUDA.
  void to(const at::Device& device, at::ScalarType frozen_dtype);
  void set_training(bool) override {}  // no dropout or batch norm anywhere in SmolVLA
  nlohmann::ordered_json config_json() const override { return model_.config().to_lerobot_json(); }
  void set_normalization(const FeatureStats& state, const FeatureStats& action) override {
    stats_ = NormalizationStats{state, action};
  }
  // LeRobot's processor files, when normalisation statistics are known.
  void write_extra_files(const std::string& dir) override;
  ParameterSet checkpoint_tensors() override;
  void load_checkpoint(const ParameterSet& checkpoint) override;

  Model& model() { return model_; }
  // Images resized, padded and mapped to [-1, 1]; tasks tokenized unless token ids and their
  // mask are given; state padded (§3.2, §4).
  PrefixInputs prepare(const Batch& batch, const std::pair<at::Tensor, at::Tensor>* tokens = nullptr) const;
  // The token ids and mask of prompts as LeRobot's tokenizer step makes them.
  std::pair<at::Tensor, at::Tensor> tokenize(const std::vector<std::string>& tasks) const;
  // How the image and language tokens' keys and values are had. While the VLM is frozen they
  // never depend on the state, the actions or a trainable weight, so all three give the same
  // velocity and gradients; when VLM weights train only Joint carries their gradients:
  enum class PrefixPath {
    Joint,      // LeRobot's single pass over [prefix | actions], with autograd through the prefix
    Recompute,  // computed first without autograd; then only the state token and the expert
    Cached,     // Recompute, served from and stored in the prefix cache
  };
  // Flow-matching velocity for given noise and time.
  at::Tensor velocity(const PrefixInputs& inputs, const at::Tensor& x_t, const at::Tensor& time, PrefixPath path);
  // What loss() uses: Joint when VLM weights train, else Cached when the cache is on, else Recompute.
  PrefixPath training_path() const {
    return vlm_trains_ ? PrefixPath::Joint : cache_ ? PrefixPath::Cached : PrefixPath::Recompute;
  }
  // Pads [B, H, action_dim] to max_action_dim with zeros.
  at::Tensor pad_action(const at::Tensor& action) const;
  bool prefix_cache_enabled() const { return cache_ != nullptr; }
  std::optional<PrefixCacheStats> prefix_cache_stats() const override {
    return cache_ ? std::optional<PrefixCacheStats>(cache_->stats()) : std::nullopt;
  }
  void share_frozen(Policy& other) override;

 private:
  // The image/language keys and values of the samples `index` selects (all when undefined),
  // computed without autograd, and their pad mask.
  KVCache frozen_prefix(const PrefixInputs& inputs, const at::Tensor& index, at::Tensor& pad_mask);
  // The same from the cache (computing and storing misses), each sample's entry padded to the
  // longest.
  KVCache cached_prefix(const PrefixInputs& inputs, at::Tensor& pad_mask);
  std::string frozen_fingerprint();

  Model model_;
  bool vlm_trains_ = false;  // some backbone weight trains (train_expert_only: false, spec.policy.train)
  std::optional<Tokenizer> tokenizer_;
  bool truncate_left_ = false;
  int64_t pad_token_id_ = 0;
  std::shared_ptr<PrefixCache> cache_;  // shared with the policies that share_frozen() from this one
  std::optional<NormalizationStats> stats_;
  std::string fingerprint_;
  int64_t fingerprint_version_ = -1;
};

std::unique_ptr<Policy> make_smolvla(const PolicySpec& spec);

}  // namespace zk0::smolvla
