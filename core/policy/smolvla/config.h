#pragma once
// SmolVLA's configuration: LeRobot's SmolVLAConfig (config.json of a pretrained folder) and the
// SmolVLM2 backbone sizes it names through vlm_model_name (that model's config.json). See
// shared/reference/smolvla.md §1-2.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "core/policy/flow_matching.h"

namespace zk0::smolvla {

// SmolVLM's vision tower (SigLIP) and text model (SmolLM2, Llama) sizes, and the connector's
// pixel-shuffle factor: what LeRobot reads with AutoConfig.from_pretrained(vlm_model_name).
struct BackboneConfig {
  int64_t vision_hidden = 768, vision_layers = 12, vision_heads = 12, vision_intermediate = 3072;
  int64_t image_size = 512, patch_size = 16;
  double vision_norm_eps = 1e-6;
  int64_t scale_factor = 4;
  int64_t text_layers = 32, text_hidden = 960, text_heads = 15, text_kv_heads = 5, head_dim = 64, text_intermediate = 2560;
  int64_t vocab_size = 49280;
  double rms_norm_eps = 1e-5;

  // SmolVLM2-500M-Video-Instruct, the backbone of lerobot/smolvla_base.
  static BackboneConfig smolvlm2_500m() { return {}; }
  // A transformers SmolVLMConfig (config.json with text_config / vision_config / scale_factor);
  // a field it leaves out takes transformers' default, as AutoConfig would.
  static BackboneConfig from_hf_json(const nlohmann::ordered_json& j, const std::string& where);
  nlohmann::ordered_json to_hf_json() const;
};

// Where the prefix cache keeps image and language keys/values (see prefix_cache.h).
struct PrefixCacheConfig {
  bool enabled = true;
  int64_t memory_bytes = int64_t{2} << 30;
  int64_t disk_bytes = 0;  // 0: no disk tier
  std::string disk_dir;
};

struct Config {
  // LeRobot SmolVLAConfig fields this implementation reads.
  int64_t chunk_size = 50, n_action_steps = 50;
  int64_t max_state_dim = 32, max_action_dim = 32;
  int64_t resize_width = 512, resize_height = 512;  // resize_imgs_with_padding
  int64_t empty_cameras = 0;
  int64_t tokenizer_max_length = 48;
  int64_t num_steps = 10;
  bool freeze_vision_encoder = true, train_expert_only = true, train_state_proj = true;
  std::string vlm_model_name = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct";
  bool pad_language_to_max_length = false;  // pad_language_to: "max_length" or "longest"
  int64_t prefix_length = -1;
  int64_t num_expert_layers = -1, num_vlm_layers = 16, self_attn_every_n_layers = 2;
  // attention_mode: cross_attn interleaves self- and cross-attention expert layers; self_attn
  // makes every layer a joint self-attention over [prefix | suffix].
  bool cross_attention = true;
  // add_image_special_tokens: each camera's tokens framed as <fake_token_around_image>
  // <global-img> [image] <fake_token_around_image>, ids from the backbone's tokenizer.
  bool add_image_special_tokens = false;
  int64_t fake_image_token_id = -1, global_image_token_id = -1;
  double expert_width_multiplier = 0.75;
  double min_period = 4e-3, max_period = 4.0;
  std::vector<std::string> image_keys;  // VISUAL input features, in config order
  int64_t state_dim = 6, action_dim = 6;  // observation.state and action shapes

  BackboneConfig backbone;

  // zk0's own settings (never in LeRobot's config.json).
  LossReduction reduction = LossReduction::Masked;
  PrefixCacheConfig prefix_cache;
  uint64_t init_seed = 0;
  std::string tokenizer_file;  // tokenizer.json of the backbone; empty when none is found
  // Dataset camera key -> the policy's image feature (LeRobot's --rename_map), e.g.
  // observation.images.top -> observation.image for smolvla_base.
  std::map<std::string, std::string> rename_map;

  // The config.json this was read from, written back with our values so that LeRobot's own
  // fields we do not interpret (optimizer, scheduler, features' names) survive a round trip.
  nlohmann::ordered_json lerobot_json;

  int64_t expert_hidden() const { return static_cast<int64_t>(backbone.text_hidden * expert_width_multiplier); }
  int64_t expert_intermediate() const;  // LeRobot's get_intermediate_size(expert_hidden)
  // LeRobot keeps the first num_vlm_layers of the backbone's text layers.
  int64_t vlm_layers() const {
    return num_vlm_layers > 0 ? std::min(num_vlm_layers, backbone.text_layers) : backbone.text_layers;
  }
  int64_t expert_layers() const { return num_expert_layers > 0 ? num_expert_layers : vlm_layers(); }
  // LeRobot: a self-attention layer every self_attn_every_n_layers (none when it is not positive).
  bool is_cross_attention_layer(int64_t layer) const {
    return cross_attention && !(self_attn_every_n_layers > 0 && layer % self_attn_every_n_layers == 0);
  }
  // The expert layer paired with VLM layer `layer`, or -1 when that layer has none.
  int64_t expert_layer_for(int64_t layer) const;
  // The vision tower's patch grid for resize_imgs_with_padding: (height/patch) x (width/patch).
  int64_t patches_per_side() const { return resize_height / backbone.patch_size; }
  int64_t tokens_per_image() const;  // after the connector's pixel shuffle
  // The prefix tokens one camera adds: its image tokens, and the special tokens around them.
  int64_t prefix_tokens_per_image() const { return tokens_per_image() + (add_image_special_tokens ? 3 : 0); }
  int64_t num_cameras() const { return static_cast<int64_t>(image_keys.size()) + empty_cameras; }

  // LeRobot's config.json (SmolVLAConfig, type "smolvla"). `where` names the file in errors.
  static Config from_lerobot_json(const nlohmann::ordered_json& j, const std::string& where);
  nlohmann::ordered_json to_lerobot_json() const;
};

// Reads spec.policy for type smolvla: the pretrained folder's config.json if any, then
// spec.policy.config's fields (LeRobot's names, plus zk0's lossReduction, prefixCache, initSeed,
// backbone). Problems are SpecError entries naming spec.policy.config.<field>.
Config config_from_spec(const nlohmann::ordered_json& spec_config, const std::string& pretrained);

}  // namespace zk0::smolvla
