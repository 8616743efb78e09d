#include "core/policy/smolvla/config.h"
#include "core/util/json_number.h"

#include <filesystem>
#include <set>

#include "core/lerobot/hub_cache.h"
#include "core/spec/federation_spec.h"
#include "core/util/fs.h"

namespace zk0::smolvla {

namespace fs = std::filesystem;

namespace {

const char* kDefaultBackbone = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct";

// Reads typed fields of one JSON object, collecting problems under a field-path prefix.
class FieldReader {
 public:
  FieldReader(const nlohmann::ordered_json& j, std::string prefix, std::vector<std::string>& problems)
      : j_(j), prefix_(std::move(prefix)), problems_(problems) {}

  template <typename T>
  void integer(const char* key, T& out, int64_t min) {
    if (!j_.contains(key)) return;
    if (!j_[key].is_number_integer() || j_[key].get<int64_t>() < min)
      problems_.push_back(prefix_ + key + ": must be an integer of at least " + std::to_string(min));
    else
      out = static_cast<T>(j_[key].get<int64_t>());
  }
  void number(const char* key, double& out) {
    if (!j_.contains(key)) return;
    if (!j_[key].is_number()) problems_.push_back(prefix_ + key + ": must be a number");
    else out = j_[key].get<double>();
  }
  void boolean(const char* key, bool& out) {
    if (!j_.contains(key)) return;
    if (!j_[key].is_boolean()) problems_.push_back(prefix_ + key + ": must be true or false");
    else out = j_[key].get<bool>();
  }
  void string(const char* key, std::string& out) {
    if (!j_.contains(key)) return;
    if (!j_[key].is_string()) problems_.push_back(prefix_ + key + ": must be a string");
    else out = j_[key].get<std::string>();
  }

 private:
  const nlohmann::ordered_json& j_;
  std::string prefix_;
  std::vector<std::string>& problems_;
};

void throw_if(const std::vector<std::string>& problems) {
  if (!problems.empty()) throw SpecError(problems);
}

int64_t feature_width(const nlohmann::ordered_json& feature) {
  if (!feature.contains("shape") || !feature["shape"].is_array() || feature["shape"].empty()) return -1;
  return feature["shape"].back().is_number_integer() ? json_integer(feature["shape"].back()) : -1;
}

// Reads input_features / output_features and the fields we interpret from `j` into `c`.
void read_lerobot_fields(const nlohmann::ordered_json& j, const std::string& prefix, Config& c,
                         std::vector<std::string>& problems) {
  FieldReader r(j, prefix, problems);
  r.integer("chunk_size", c.chunk_size, 1);
  r.integer("n_action_steps", c.n_action_steps, 1);
  r.integer("max_state_dim", c.max_state_dim, 1);
  r.integer("max_action_dim", c.max_action_dim, 1);
  r.integer("empty_cameras", c.empty_cameras, 0);
  r.integer("tokenizer_max_length", c.tokenizer_max_length, 1);
  r.integer("num_steps", c.num_steps, 1);
  r.boolean("freeze_vision_encoder", c.freeze_vision_encoder);
  r.boolean("train_expert_only", c.train_expert_only);
  r.boolean("train_state_proj", c.train_state_proj);
  r.string("vlm_model_name", c.vlm_model_name);
  r.integer("prefix_length", c.prefix_length, -1);
  r.integer("num_expert_layers", c.num_expert_layers, -1);
  r.integer("num_vlm_layers", c.num_vlm_layers, -1);
  r.integer("self_attn_every_n_layers", c.self_attn_every_n_layers, -1);
  r.boolean("add_image_special_tokens", c.add_image_special_tokens);
  r.number("expert_width_multiplier", c.expert_width_multiplier);
  r.number("min_period", c.min_period);
  r.number("max_period", c.max_period);
  if (j.contains("pad_language_to")) {
    const std::string v = j["pad_language_to"].is_string() ? j["pad_language_to"].get<std::string>() : "";
    if (v != "longest" && v != "max_length") problems.push_back(prefix + "pad_language_to: must be longest or max_length");
    c.pad_language_to_max_length = v == "max_length";
  }
  if (j.contains("resize_imgs_with_padding")) {
    const auto& v = j["resize_imgs_with_padding"];
    if (!v.is_array() || v.size() != 2 || !v[0].is_number_integer() || !v[1].is_number_integer())
      problems.push_back(prefix + "resize_imgs_with_padding: must be [width, height]");
    else
      c.resize_width = v[0].get<int64_t>(), c.resize_height = v[1].get<int64_t>();
  }
  if (j.contains("attention_mode")) {
    const std::string mode = j["attention_mode"].is_string() ? j["attention_mode"].get<std::string>() : "";
    if (mode != "cross_attn" && mode != "self_attn") problems.push_back(prefix + "attention_mode: must be cross_attn or self_attn");
    c.cross_attention = mode != "self_attn";
  }
  for (const char* unsupported : {"adapt_to_pi_aloha", "use_delta_joint_actions_aloha"})
    if (j.contains(unsupported) && j[unsupported] == true)
      problems.push_back(prefix + unsupported + ": true is not implemented");
  if (j.contains("n_obs_steps") && j["n_obs_steps"] != 1)
    problems.push_back(prefix + "n_obs_steps: SmolVLA takes one observation step");
  if (j.contains("input_features")) {
    if (!j["input_features"].is_object()) {
      problems.push_back(prefix + "input_features: must be an object of feature name -> {type, shape}");
    } else {
      c.image_keys.clear();
      for (auto it = j["input_features"].begin(); it != j["input_features"].end(); ++it) {
        const std::string type = it.value().value("type", "");
        if (type == "VISUAL" && it.key().rfind("observation.images.empty_camera_", 0) != 0) c.image_keys.push_back(it.key());
        if (type == "STATE") c.state_dim = feature_width(it.value());
      }
    }
  }
  if (j.contains("output_features") && j["output_features"].is_object() && j["output_features"].contains("action"))
    c.action_dim = feature_width(j["output_features"]["action"]);
  if (c.state_dim < 1 || c.state_dim > c.max_state_dim)
    problems.push_back(prefix + "input_features: the STATE feature's width must be 1.." + std::to_string(c.max_state_dim));
  if (c.action_dim < 1 || c.action_dim > c.max_action_dim)
    problems.push_back(prefix + "output_features.action: its width must be 1.." + std::to_string(c.max_action_dim));
  if (c.n_action_steps > c.chunk_size) problems.push_back(prefix + "n_action_steps: must not exceed chunk_size");
}

// The directory holding the backbone's config.json (and tokenizer.json) for vlm_model_name:
// a folder (relative to the working or the pretrained folder), else the Hub cache; empty if
// neither. `local` tells which.
std::string backbone_dir(const std::string& name, const std::string& pretrained, bool& local) {
  std::vector<fs::path> candidates = {fs::path(name)};
  if (!pretrained.empty()) candidates.push_back(fs::path(pretrained) / name);
  local = true;
  for (const fs::path& candidate : candidates)
    if (fs::is_regular_file(candidate / "config.json")) return fs::absolute(candidate).lexically_normal().string();
  local = false;
  if (looks_like_hub_id(name)) {
    try {
      return hub_snapshot_path(name, "main", hub_cache_root(), HubRepoType::Model);
    } catch (const std::exception&) {
    }
  }
  return "";
}

}  // namespace

BackboneConfig BackboneConfig::from_hf_json(const nlohmann::ordered_json& j, const std::string& where) {
  // transformers' defaults: SmolVLMConfig, SmolVLMVisionConfig and LlamaConfig.
  BackboneConfig b;
  b.scale_factor = 2;
  b.vision_hidden = 1152, b.vision_layers = 12, b.vision_heads = 16, b.vision_intermediate = 3072;
  b.image_size = 224, b.patch_size = 32, b.vision_norm_eps = 1e-6;
  b.text_layers = 32, b.text_hidden = 4096, b.text_heads = 32, b.text_intermediate = 11008;
  b.vocab_size = 32000, b.rms_norm_eps = 1e-6;
  std::vector<std::string> problems;
  if (!j.contains("text_config") || !j["text_config"].is_object())
    problems.push_back(where + ".text_config: missing (a SmolVLM config has text_config and vision_config)");
  if (!j.contains("vision_config") || !j["vision_config"].is_object())
    problems.push_back(where + ".vision_config: missing");
  throw_if(problems);
  const auto& t = j["text_config"];
  const auto& v = j["vision_config"];
  FieldReader top(j, where + ".", problems);
  FieldReader text(t, where + ".text_config.", problems);
  FieldReader vision(v, where + ".vision_config.", problems);
  top.integer("scale_factor", b.scale_factor, 1);
  text.integer("num_hidden_layers", b.text_layers, 1);
  text.integer("hidden_size", b.text_hidden, 1);
  text.integer("num_attention_heads", b.text_heads, 1);
  b.text_kv_heads = b.text_heads;  // LlamaConfig: num_key_value_heads defaults to the head count
  text.integer("num_key_value_heads", b.text_kv_heads, 1);
  text.integer("intermediate_size", b.text_intermediate, 1);
  text.integer("vocab_size", b.vocab_size, 1);
  text.number("rms_norm_eps", b.rms_norm_eps);
  b.head_dim = b.text_hidden / b.text_heads;
  text.integer("head_dim", b.head_dim, 2);
  vision.integer("hidden_size", b.vision_hidden, 1);
  vision.integer("num_hidden_layers", b.vision_layers, 1);
  vision.integer("num_attention_heads", b.vision_heads, 1);
  vision.integer("intermediate_size", b.vision_intermediate, 1);
  vision.integer("image_size", b.image_size, 1);
  vision.integer("patch_size", b.patch_size, 1);
  vision.number("layer_norm_eps", b.vision_norm_eps);
  if (b.text_heads % b.text_kv_heads) problems.push_back(where + ".text_config.num_key_value_heads: must divide num_attention_heads");
  if (b.head_dim % 2) problems.push_back(where + ".text_config.head_dim: must be even (RoPE)");
  if (b.vision_hidden % b.vision_heads) problems.push_back(where + ".vision_config.num_attention_heads: must divide hidden_size");
  const int64_t side = b.image_size / b.patch_size;
  if (b.image_size % b.patch_size || side % b.scale_factor)
    problems.push_back(where + ".scale_factor: image_size/patch_size must be a multiple of it");
  throw_if(problems);
  return b;
}

nlohmann::ordered_json BackboneConfig::to_hf_json() const {
  return {{"model_type", "smolvlm"},
          {"scale_factor", scale_factor},
          {"text_config",
           {{"model_type", "llama"},
            {"num_hidden_layers", text_layers},
            {"hidden_size", text_hidden},
            {"num_attention_heads", text_heads},
            {"num_key_value_heads", text_kv_heads},
            {"head_dim", head_dim},
            {"intermediate_size", text_intermediate},
            {"vocab_size", vocab_size},
            {"rms_norm_eps", rms_norm_eps},
            {"hidden_act", "silu"}}},
          {"vision_config",
           {{"model_type", "smolvlm_vision"},
            {"hidden_size", vision_hidden},
            {"num_hidden_layers", vision_layers},
            {"num_attention_heads", vision_heads},
            {"intermediate_size", vision_intermediate},
            {"image_size", image_size},
            {"patch_size", patch_size},
            {"layer_norm_eps", vision_norm_eps}}}};
}

int64_t Config::expert_intermediate() const {
  int64_t hidden = static_cast<int64_t>(2 * expert_hidden() / 3);  // int(2*h/3) as Python computes it
  hidden *= 4;
  return 256 * ((hidden + 255) / 256);
}

int64_t Config::expert_layer_for(int64_t layer) const {
  const int64_t multiple = vlm_layers() / expert_layers();
  if (multiple > 0 && layer > 0 && layer % multiple != 0) return -1;
  return multiple > 0 ? layer / multiple : layer;
}

int64_t Config::tokens_per_image() const {
  const int64_t side = patches_per_side() / backbone.scale_factor;
  return side * side;
}

Config Config::from_lerobot_json(const nlohmann::ordered_json& j, const std::string& where) {
  Config c;
  std::vector<std::string> problems;
  if (j.value("type", "") != "smolvla") problems.push_back(where + ": type must be smolvla");
  read_lerobot_fields(j, where + ": ", c, problems);
  throw_if(problems);
  c.lerobot_json = j;
  return c;
}

nlohmann::ordered_json Config::to_lerobot_json() const {
  nlohmann::ordered_json j = lerobot_json.is_object() ? lerobot_json : nlohmann::ordered_json::object();
  j["type"] = "smolvla";
  j["n_obs_steps"] = 1;
  j["chunk_size"] = chunk_size;
  j["n_action_steps"] = n_action_steps;
  j["max_state_dim"] = max_state_dim;
  j["max_action_dim"] = max_action_dim;
  j["resize_imgs_with_padding"] = {resize_width, resize_height};
  j["empty_cameras"] = empty_cameras;
  j["tokenizer_max_length"] = tokenizer_max_length;
  j["num_steps"] = num_steps;
  j["freeze_vision_encoder"] = freeze_vision_encoder;
  j["train_expert_only"] = train_expert_only;
  j["train_state_proj"] = train_state_proj;
  j["vlm_model_name"] = vlm_model_name;
  j["load_vlm_weights"] = false;  // the weights are all in model.safetensors
  j["attention_mode"] = cross_attention ? "cross_attn" : "self_attn";
  j["add_image_special_tokens"] = add_image_special_tokens;
  j["prefix_length"] = prefix_length;
  j["pad_language_to"] = pad_language_to_max_length ? "max_length" : "longest";
  j["num_expert_layers"] = num_expert_layers;
  j["num_vlm_layers"] = num_vlm_layers;
  j["self_attn_every_n_layers"] = self_attn_every_n_layers;
  j["expert_width_multiplier"] = expert_width_multiplier;
  j["min_period"] = min_period;
  j["max_period"] = max_period;
  if (!j.contains("normalization_mapping"))
    j["normalization_mapping"] = {{"VISUAL", "IDENTITY"}, {"STATE", "MEAN_STD"}, {"ACTION", "MEAN_STD"}};
  nlohmann::ordered_json inputs = nlohmann::ordered_json::object();
  inputs["observation.state"] = {{"type", "STATE"}, {"shape", {state_dim}}};
  const nlohmann::ordered_json old_inputs = j.value("input_features", nlohmann::ordered_json::object());
  for (const auto& key : image_keys)
    inputs[key] = old_inputs.contains(key) ? old_inputs[key]
                                           : nlohmann::ordered_json{{"type", "VISUAL"}, {"shape", {3, resize_height, resize_width}}};
  j["input_features"] = inputs;
  j["output_features"] = {{"action", {{"type", "ACTION"}, {"shape", {action_dim}}}}};
  return j;
}

Config config_from_spec(const nlohmann::ordered_json& spec_config, const std::string& pretrained) {
  const std::string base = "spec.policy.config.";
  std::vector<std::string> problems;
  Config c;
  if (!pretrained.empty()) {
    const std::string file = (fs::path(pretrained) / "config.json").string();
    if (!fs::is_regular_file(file)) throw SpecError({"spec.policy.pretrained: " + file + " does not exist"});
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(read_file(file));
    } catch (const std::exception& e) {
      throw SpecError({"spec.policy.pretrained: " + file + ": " + e.what()});
    }
    c = Config::from_lerobot_json(j, file);
  } else {
    c.lerobot_json = nlohmann::ordered_json::object();
  }
  static const std::set<std::string> kZk0Fields = {"loss_reduction", "prefix_cache", "init_seed", "vlm_config",
                                                   "tokenizer_file", "rename_map"};
  static const std::set<std::string> kLeRobotFields = {
      "chunk_size", "n_action_steps", "max_state_dim", "max_action_dim", "resize_imgs_with_padding", "empty_cameras",
      "tokenizer_max_length", "num_steps", "freeze_vision_encoder", "train_expert_only", "train_state_proj",
      "vlm_model_name", "prefix_length", "pad_language_to", "num_expert_layers", "num_vlm_layers",
      "self_attn_every_n_layers", "expert_width_multiplier", "min_period", "max_period", "input_features",
      "output_features", "attention_mode", "n_obs_steps", "add_image_special_tokens"};
  if (!spec_config.is_object()) throw SpecError({"spec.policy.config: must be an object"});
  nlohmann::ordered_json lerobot_part = nlohmann::ordered_json::object();
  for (auto it = spec_config.begin(); it != spec_config.end(); ++it) {
    if (kLeRobotFields.count(it.key())) lerobot_part[it.key()] = it.value();
    else if (!kZk0Fields.count(it.key())) problems.push_back(base + it.key() + ": unknown field (SmolVLA takes LeRobot's SmolVLAConfig names)");
  }
  read_lerobot_fields(lerobot_part, base, c, problems);
  for (auto it = lerobot_part.begin(); it != lerobot_part.end(); ++it) c.lerobot_json[it.key()] = it.value();

  FieldReader r(spec_config, base, problems);
  int64_t seed = 0;
  r.integer("init_seed", seed, 0);
  c.init_seed = static_cast<uint64_t>(seed);
  r.string("tokenizer_file", c.tokenizer_file);
  if (spec_config.contains("loss_reduction")) {
    const auto v = spec_config["loss_reduction"].is_string() ? spec_config["loss_reduction"].get<std::string>() : "";
    if (v == "masked") c.reduction = LossReduction::Masked;
    else if (v == "unmasked") c.reduction = LossReduction::Unmasked;
    else problems.push_back(base + "loss_reduction: must be masked or unmasked");
  }
  if (spec_config.contains("rename_map")) {
    const auto& m = spec_config["rename_map"];
    if (!m.is_object()) problems.push_back(base + "rename_map: must map dataset camera keys to image features");
    else
      for (auto it = m.begin(); it != m.end(); ++it) {
        if (!it.value().is_string()) problems.push_back(base + "rename_map." + it.key() + ": must be a string");
        else c.rename_map[it.key()] = it.value().get<std::string>();
      }
  }
  if (spec_config.contains("prefix_cache")) {
    const auto& p = spec_config["prefix_cache"];
    if (!p.is_object()) {
      problems.push_back(base + "prefix_cache: must be an object {enabled, memory_mb, disk_mb, dir}");
    } else {
      FieldReader pr(p, base + "prefix_cache.", problems);
      int64_t memory_mb = c.prefix_cache.memory_bytes >> 20, disk_mb = 0;
      pr.boolean("enabled", c.prefix_cache.enabled);
      pr.integer("memory_mb", memory_mb, 0);
      pr.integer("disk_mb", disk_mb, 0);
      pr.string("dir", c.prefix_cache.disk_dir);
      c.prefix_cache.memory_bytes = memory_mb << 20;
      c.prefix_cache.disk_bytes = disk_mb << 20;
      for (auto it = p.begin(); it != p.end(); ++it)
        if (!std::set<std::string>{"enabled", "memory_mb", "disk_mb", "dir"}.count(it.key()))
          problems.push_back(base + "prefix_cache." + it.key() + ": unknown field");
      if (c.prefix_cache.disk_bytes > 0 && c.prefix_cache.disk_dir.empty())
        problems.push_back(base + "prefix_cache.dir: required when disk_mb > 0");
    }
  }
  throw_if(problems);

  if (spec_config.contains("vlm_config")) {
    c.backbone = BackboneConfig::from_hf_json(spec_config["vlm_config"], base + "vlm_config");
  } else {
    bool local = false;
    const std::string dir = backbone_dir(c.vlm_model_name, pretrained, local);
    if (!dir.empty()) {
      // A local folder is written back absolute, so that LeRobot finds it from any directory.
      if (local) c.vlm_model_name = dir;
      const std::string file = dir + "/config.json";
      c.backbone = BackboneConfig::from_hf_json(nlohmann::ordered_json::parse(read_file(file)), file);
      if (c.tokenizer_file.empty() && fs::is_regular_file(dir + "/tokenizer.json")) c.tokenizer_file = dir + "/tokenizer.json";
    } else if (c.vlm_model_name == kDefaultBackbone) {
      c.backbone = BackboneConfig::smolvlm2_500m();
    } else {
      throw SpecError({base + "vlm_model_name: '" + c.vlm_model_name +
                       "' is neither a folder with config.json nor in the Hugging Face cache (" + hub_cache_root() + ")"});
    }
  }
  // Images of any size reach the vision tower (its position embeddings are looked up on its own
  // grid), but the connector's pixel shuffle needs a square patch grid its factor divides.
  {
    const int64_t p = c.backbone.patch_size, s = c.backbone.scale_factor;
    const int64_t rows = c.resize_height / p, cols = c.resize_width / p;
    if (rows != cols || rows == 0 || rows % s != 0)
      throw SpecError({base + "resize_imgs_with_padding: [" + std::to_string(c.resize_width) + ", " + std::to_string(c.resize_height) +
                       "] gives a " + std::to_string(rows) + "x" + std::to_string(cols) + " patch grid (patch_size " + std::to_string(p) +
                       "); the connector needs a square grid whose side scale_factor " + std::to_string(s) + " divides"});
  }
  if (c.add_image_special_tokens) {
    // As transformers' tokenizer.fake_image_token_id / global_image_token_id resolve them.
    if (c.tokenizer_file.empty())
      throw SpecError({base + "add_image_special_tokens: needs the backbone's tokenizer.json (its image special tokens' ids)"});
    const nlohmann::ordered_json tok = nlohmann::ordered_json::parse(read_file(c.tokenizer_file));
    const auto token_id = [&](const std::string& token) -> int64_t {
      for (const auto& added : tok.value("added_tokens", nlohmann::ordered_json::array()))
        if (added.value("content", "") == token) return json_integer(added.at("id"));
      const auto& vocab = tok["model"]["vocab"];
      if (vocab.is_object() && vocab.contains(token)) return json_integer(vocab[token]);
      throw SpecError({base + "add_image_special_tokens: " + c.tokenizer_file + " has no token " + token});
    };
    c.fake_image_token_id = token_id("<fake_token_around_image>");
    c.global_image_token_id = token_id("<global-img>");
  }
  if (c.num_expert_layers > 0 && c.vlm_layers() % c.num_expert_layers != 0)
    throw SpecError({base + "num_expert_layers: must divide the number of VLM layers (" + std::to_string(c.vlm_layers()) + ")"});
  if (c.image_keys.empty() && c.empty_cameras == 0)
    throw SpecError({base + "input_features: SmolVLA needs at least one VISUAL feature"});
  return c;
}

}  // namespace zk0::smolvla
