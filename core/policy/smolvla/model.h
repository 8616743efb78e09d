#pragma once
// SmolVLA (LeRobot's VLAFlowMatching) in LibTorch: the SmolVLM2 backbone (SigLIP vision tower,
// pixel-shuffle connector, the first num_vlm_layers SmolLM2 layers) and the flow-matching action
// expert, with tensors named exactly as in LeRobot's model.safetensors. shared/reference/smolvla.md
// §2-3 is the specification; comments cite its sections.
#include <ATen/ATen.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/policy/smolvla/config.h"

namespace zk0::smolvla {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Keys (after RoPE) and values of one layer, [B, L, kv_heads, head_dim] as LeRobot lays them out.
struct LayerKV {
  at::Tensor key, value;
};
using KVCache = std::vector<LayerKV>;  // one entry per VLM layer

// What embed_prefix produces (§3.3): [images | language | state] embeddings, their padding mask
// and attention flags (0: bidirectional block, 1: starts a new causal block).
struct Prefix {
  at::Tensor embeddings;  // [B, P, text_hidden]
  at::Tensor pad_mask;    // [B, P] bool
  at::Tensor att_flags;   // [B, P] int64
};

// Model inputs after preprocessing (§3.2): images resized and in [-1, 1], padded state.
struct PrefixInputs {
  std::vector<at::Tensor> images;       // each [B, 3, resize height, resize width]
  std::vector<at::Tensor> image_masks;  // each [B] bool
  at::Tensor lang_tokens;               // [B, L] int64
  at::Tensor lang_mask;                 // [B, L] bool
  at::Tensor state;                     // [B, max_state_dim]
  std::vector<std::string> sample_ids;  // Batch::sample_ids, when the batch came from a dataset
};

class Model {
 public:
  // Random weights drawn per tensor from (config.init_seed, name), so every process agrees.
  explicit Model(const Config& config);

  const Config& config() const { return config_; }
  NamedTensors& parameters() { return parameters_; }
  // The dtype each tensor has in LeRobot's checkpoint (BF16 backbone and expert, F32 heads and
  // cross-attention k/v), or the dtype it was loaded with.
  at::ScalarType checkpoint_dtype(const std::string& name) const { return checkpoint_dtypes_.at(name); }
  void set_checkpoint_dtype(const std::string& name, at::ScalarType dtype) { checkpoint_dtypes_[name] = dtype; }

  // §3.3. The image and language parts never depend on the state or on trainable weights.
  at::Tensor embed_image(const at::Tensor& image);          // [B, tokens_per_image, text_hidden], scaled
  at::Tensor embed_language(const at::Tensor& tokens);      // [B, L, text_hidden], scaled
  at::Tensor embed_state(const at::Tensor& state);          // [B, 1, text_hidden]
  // The image and language tokens alone (all attention flags 0): what the prefix cache holds.
  Prefix embed_frozen_prefix(const PrefixInputs& inputs);
  // embed_frozen_prefix plus the state token, padded to prefix_length if set.
  Prefix embed_prefix(const PrefixInputs& inputs);
  // §3.6 embed_suffix: noisy actions [B, H, max_action_dim] and time [B] -> [B, H, expert_hidden].
  at::Tensor embed_suffix(const at::Tensor& x_t, const at::Tensor& time);

  // The keys and values of every layer for a prefix computed alone (LeRobot's prefill).
  KVCache prefill(const Prefix& prefix);

  // The velocity v_t [B, H, max_action_dim] for noisy actions x_t at time t. `cached` holds the
  // keys/values of the first cached_len prefix tokens (from prefill or the prefix cache); the
  // remaining prefix tokens (embeddings from index cached_len on) run through the VLM now.
  at::Tensor velocity(const Prefix& prefix, const KVCache* cached, int64_t cached_len, const at::Tensor& x_t,
                      const at::Tensor& time);

  // §3.7: Euler integration of num_steps from `noise` at t=1 with the prefix computed once.
  at::Tensor sample_actions(const Prefix& prefix, const at::Tensor& noise);

  // The dtype activations run in: the frozen backbone's storage dtype.
  at::ScalarType compute_dtype() const { return embed_tokens_.scalar_type(); }

 private:
  struct Linear {
    at::Tensor weight, bias;
  };
  struct DecoderLayer {  // a Llama layer of the text model or of the expert
    at::Tensor input_norm, post_norm;
    Linear q, k, v, o, gate, up, down;
  };
  struct VisionLayer {
    at::Tensor ln1_w, ln1_b, ln2_w, ln2_b;
    Linear q, k, v, out, fc1, fc2;
  };

  at::Tensor& add(const std::string& name, std::vector<int64_t> shape, at::ScalarType checkpoint_dtype);
  Linear add_linear(const std::string& name, int64_t in, int64_t out, bool bias, at::ScalarType dtype);
  DecoderLayer add_decoder_layer(const std::string& prefix, int64_t hidden, int64_t intermediate, int64_t kv_in);
  void initialise();

  at::Tensor vision_tower(const at::Tensor& pixels);
  // Position embeddings for a rows x cols patch grid (the tower's own grid: the table itself).
  at::Tensor patch_positions(int64_t rows, int64_t cols);
  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) const;
  at::Tensor rope(const at::Tensor& x, const at::Tensor& positions) const;
  at::Tensor mlp(const DecoderLayer& layer, const at::Tensor& x) const;
  // A projection's output split into heads: [B, L, heads, head_dim].
  at::Tensor heads(const Linear& proj, const at::Tensor& normed) const;

  // The layer loop of SmolVLMWithExpertModel.forward (§3.5) over [cached | prefix | suffix]:
  // `prefix` is [B, P', text_hidden] or undefined, `suffix` [B, H, expert_hidden] or undefined,
  // `mask` [B, P'+H, cached_len+P'+H], `positions` [B, P'+H]. Returns the expert's normed output;
  // `fill` receives every layer's prefix keys/values.
  at::Tensor run_layers(const KVCache* cached, at::Tensor prefix, at::Tensor suffix, const at::Tensor& mask,
                        const at::Tensor& positions, KVCache* fill);

  Config config_;
  NamedTensors parameters_;
  std::map<std::string, at::ScalarType> checkpoint_dtypes_;

  at::Tensor patch_w_, patch_b_, position_embedding_, post_ln_w_, post_ln_b_;
  std::vector<VisionLayer> vision_layers_;
  at::Tensor connector_w_, embed_tokens_, lm_head_, text_norm_, expert_norm_;
  std::vector<DecoderLayer> text_layers_, expert_layers_;
  Linear state_proj_, action_in_proj_, action_out_proj_, action_time_mlp_in_, action_time_mlp_out_;
};

// §3.4: allowed[b,i,j] = cumsum(flags)[b,j] <= cumsum(flags)[b,i] && pad[b,i] && pad[b,j].
at::Tensor make_att_2d_masks(const at::Tensor& pad_mask, const at::Tensor& att_flags);

// §3.2: bilinear resize keeping the aspect ratio, then zero padding on the left and top.
at::Tensor resize_with_pad(const at::Tensor& images, int64_t width, int64_t height);

}  // namespace zk0::smolvla
