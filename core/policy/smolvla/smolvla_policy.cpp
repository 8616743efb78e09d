#include "core/policy/smolvla/smolvla_policy.h"

#include <ATen/core/grad_mode.h>

#include <filesystem>
#include <set>

#include "core/policy/flow_matching.h"
#include "core/tensor/hash.h"
#include "core/util/fs.h"
#include "core/util/log.h"

namespace zk0::smolvla {

namespace {

const std::string kVlm = "model.vlm_with_expert.vlm.";

// LeRobot's trainable set (SmolVLMWithExpertModel.set_requires_grad and VLAFlowMatching's).
std::vector<std::string> default_trainable_groups(const Config& c) {
  std::vector<std::string> groups = {"model.vlm_with_expert.lm_expert", "model.action_in_proj", "model.action_out_proj",
                                     "model.action_time_mlp_in", "model.action_time_mlp_out"};
  if (c.train_state_proj) groups.push_back("model.state_proj");
  if (!c.train_expert_only) {
    // LeRobot means to freeze the last VLM layers and the final norm, but its patterns
    // ("text_model.model.layers.N.") match no parameter name: every kept text layer, the final
    // norm, the embeddings and the connector train, and only lm_head stays frozen. The last
    // layer's keys and values do reach the loss (the expert attends to them).
    groups.push_back(kVlm + "model.connector");
    groups.push_back(kVlm + "model.text_model");
    if (!c.freeze_vision_encoder) groups.push_back(kVlm + "model.vision_model");
  }
  return groups;
}

at::Tensor pad_last_dim(const at::Tensor& t, int64_t width) {
  return t.size(-1) == width ? t : at::constant_pad_nd(t, {0, width - t.size(-1)}, 0.0);
}

void hash_tensor(Sha256& h, const at::Tensor& t) {
  const at::Tensor cpu = t.detach().to(at::kCPU).contiguous();
  h.update(cpu.data_ptr(), static_cast<size_t>(cpu.numel()) * cpu.element_size());
}

}  // namespace

SmolVLAPolicy::SmolVLAPolicy(const Config& config, std::vector<std::string> trainable_groups) : model_(config) {
  trainable_groups_ = std::move(trainable_groups);
  if (!config.tokenizer_file.empty()) {
    // transformers reads the truncation side, the pad token and add_prefix_space (which it
    // imposes on a top-level ByteLevel pre-tokenizer, false when absent) from this file.
    const auto settings = std::filesystem::path(config.tokenizer_file).parent_path() / "tokenizer_config.json";
    const nlohmann::json j = std::filesystem::is_regular_file(settings)
                                 ? nlohmann::json::parse(read_file(settings.string()))
                                 : nlohmann::json::object();
    tokenizer_ = Tokenizer::from_file(config.tokenizer_file, j.value("add_prefix_space", false));
    truncate_left_ = j.value("truncation_side", "right") == "left";
    if (j.contains("pad_token") && j["pad_token"].is_string()) {
      const auto ids = tokenizer_->encode(j["pad_token"].get<std::string>());
      if (ids.size() == 1) pad_token_id_ = ids.front();
    }
  }
  for (const auto& [name, t] : model_.parameters())
    if (name.rfind(kVlm, 0) == 0 && is_trainable(name)) vlm_trains_ = true;
  if (config.prefix_cache.enabled && !vlm_trains_ && config.prefix_length <= 0) cache_ = std::make_shared<PrefixCache>(config.prefix_cache);
  else if (config.prefix_cache.enabled)
    log_info("prefix_cache_disabled", {{"reason", vlm_trains_ ? "VLM parameters train" : "prefix_length pads the prefix"}});
}

void SmolVLAPolicy::share_frozen(Policy& other) {
  Policy::share_frozen(other);
  cache_ = dynamic_cast<SmolVLAPolicy&>(other).cache_;
}

void SmolVLAPolicy::to(const at::Device& device) {
  // On CUDA the frozen backbone runs in bfloat16, as LeRobot stores it; trainable weights keep a
  // float32 master copy and are cast to the activations' dtype where they are used.
  to(device, device.is_cuda() ? at::kBFloat16 : at::kFloat);
}

void SmolVLAPolicy::to(const at::Device& device, at::ScalarType frozen_dtype) {
  at::NoGradGuard no_grad;
  for (auto& [name, t] : model_.parameters()) t.set_data(t.to(device, is_trainable(name) ? at::kFloat : frozen_dtype));
}

std::pair<at::Tensor, at::Tensor> SmolVLAPolicy::tokenize(const std::vector<std::string>& tasks) const {
  const Config& c = model_.config();
  if (!tokenizer_)
    throw std::runtime_error("smolvla: no tokenizer.json for vlm_model_name '" + c.vlm_model_name +
                             "': put the backbone's tokenizer.json beside its config.json, or set "
                             "spec.policy.config.tokenizer_file");
  TokenizedPrompts t = tokenize_prompts(*tokenizer_, tasks, c.tokenizer_max_length, c.pad_language_to_max_length,
                                        truncate_left_, pad_token_id_);
  at::Tensor ids = at::from_blob(t.ids.data(), {t.batch, t.length}, at::kLong).clone();
  at::Tensor mask = at::from_blob(t.attention_mask.data(), {t.batch, t.length}, at::kBool).clone();
  return {ids, mask};
}

at::Tensor SmolVLAPolicy::pad_action(const at::Tensor& action) const {
  return pad_last_dim(action.to(at::kFloat), model_.config().max_action_dim);
}

PrefixInputs SmolVLAPolicy::prepare(const Batch& batch, const std::pair<at::Tensor, at::Tensor>* tokens) const {
  const Config& c = model_.config();
  const int64_t b = batch.size();
  const at::Device device = batch.state.device();
  PrefixInputs in;
  std::map<std::string, at::Tensor> images;
  for (const auto& [key, img] : batch.images) {
    const auto renamed = c.rename_map.find(key);
    images[renamed == c.rename_map.end() ? key : renamed->second] = img;
  }
  for (const auto& key : c.image_keys) {
    auto it = images.find(key);
    if (it == images.end()) continue;  // LeRobot skips cameras a batch lacks
    const at::Tensor img = resize_with_pad(it->second.to(at::kFloat), c.resize_width, c.resize_height);
    in.images.push_back(img * 2.0 - 1.0);
    in.image_masks.push_back(at::ones({b}, at::TensorOptions().dtype(at::kBool).device(device)));
  }
  if (in.images.empty()) {
    std::string available;
    for (const auto& [key, img] : batch.images) available += (available.empty() ? "" : ", ") + key;
    throw std::invalid_argument("smolvla: the batch has none of the policy's cameras (input_features, after rename_map); "
                                "it has: " + (available.empty() ? std::string("no images") : available));
  }
  for (int64_t i = 0; i < c.empty_cameras; ++i) {
    in.images.push_back(at::full_like(in.images.front(), -1.0));
    in.image_masks.push_back(at::zeros({b}, at::TensorOptions().dtype(at::kBool).device(device)));
  }
  const auto [ids, mask] = tokens ? *tokens : tokenize(batch.task);
  in.lang_tokens = ids.to(device, at::kLong);
  in.lang_mask = mask.to(device, at::kBool);
  if (batch.state.size(-1) > c.max_state_dim)
    throw std::invalid_argument("smolvla: state has " + std::to_string(batch.state.size(-1)) +
                                " dimensions, more than max_state_dim " + std::to_string(c.max_state_dim));
  in.state = pad_last_dim(batch.state.to(at::kFloat), c.max_state_dim);
  in.sample_ids = batch.sample_ids;
  return in;
}

std::string SmolVLAPolicy::frozen_fingerprint() {
  // Frozen weights change only when loaded; a tensor's version counter tells when that happened.
  int64_t version = 0;
  for (const auto& [name, t] : model_.parameters())
    if (!is_trainable(name)) version += static_cast<int64_t>(t._version());
  if (version == fingerprint_version_) return fingerprint_;
  Sha256 h;
  const std::string config = model_.config().to_lerobot_json().dump() + model_.config().backbone.to_hf_json().dump();
  h.update(config.data(), config.size());
  for (const auto& [name, t] : model_.parameters())
    if (!is_trainable(name)) {
      h.update(name.data(), name.size());
      hash_tensor(h, t.to(at::kFloat));
    }
  fingerprint_ = to_hex(h.finish());
  fingerprint_version_ = version;
  return fingerprint_;
}

KVCache SmolVLAPolicy::frozen_prefix(const PrefixInputs& in, const at::Tensor& index, at::Tensor& pad_mask) {
  at::NoGradGuard no_grad;
  PrefixInputs picked = in;
  if (index.defined()) {
    for (auto& image : picked.images) image = image.index_select(0, index);
    for (auto& mask : picked.image_masks) mask = mask.index_select(0, index);
    picked.lang_tokens = in.lang_tokens.index_select(0, index);
    picked.lang_mask = in.lang_mask.index_select(0, index);
  }
  const Prefix p = model_.embed_frozen_prefix(picked);
  pad_mask = p.pad_mask;
  return model_.prefill(p);
}

KVCache SmolVLAPolicy::cached_prefix(const PrefixInputs& in, at::Tensor& pad_mask) {
  const int64_t b = in.state.size(0);
  const at::Device device = in.state.device();
  const std::string fingerprint = frozen_fingerprint();
  const int64_t image_tokens = model_.config().prefix_tokens_per_image() * static_cast<int64_t>(in.images.size());
  // A sample's image and language tokens: every image token, and the language tokens up to the
  // last valid one (right padding), so the entry does not depend on how its batch was padded.
  const at::Tensor lang_mask_cpu = in.lang_mask.to(at::kCPU);
  std::vector<at::Tensor> image_masks_cpu;
  for (const auto& mask : in.image_masks) image_masks_cpu.push_back(mask.to(at::kCPU));
  std::vector<int64_t> lengths(static_cast<size_t>(b));
  std::vector<std::string> keys(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) {
    const at::Tensor valid = lang_mask_cpu[i].nonzero();
    const int64_t lang_len = valid.numel() ? valid.max().item<int64_t>() + 1 : 0;
    lengths[static_cast<size_t>(i)] = image_tokens + lang_len;
    Sha256 h;
    h.update(fingerprint.data(), fingerprint.size());
    // A dataset sample is named by its id, which costs nothing to hash; anything else by its
    // frames (megabytes per sample at full size).
    if (!in.sample_ids.empty()) {
      const std::string& id = in.sample_ids[static_cast<size_t>(i)];
      h.update(id.data(), id.size());
      for (const auto& mask : image_masks_cpu) hash_tensor(h, mask[i]);
    } else {
      for (size_t c = 0; c < in.images.size(); ++c) hash_tensor(h, in.images[c][i]), hash_tensor(h, image_masks_cpu[c][i]);
    }
    hash_tensor(h, in.lang_tokens[i].narrow(0, 0, lang_len));
    hash_tensor(h, lang_mask_cpu[i].narrow(0, 0, lang_len));
    keys[static_cast<size_t>(i)] = to_hex(h.finish());
  }
  std::vector<std::optional<CachedPrefix>> entries(static_cast<size_t>(b));
  std::vector<int64_t> misses;
  for (int64_t i = 0; i < b; ++i) {
    entries[static_cast<size_t>(i)] = cache_->get(keys[static_cast<size_t>(i)], device);
    if (!entries[static_cast<size_t>(i)]) misses.push_back(i);
  }
  if (!misses.empty()) {
    at::Tensor miss_pad;
    const KVCache kv = frozen_prefix(in, at::tensor(misses, at::kLong).to(device), miss_pad);
    const at::ScalarType dtype = model_.compute_dtype();
    for (size_t j = 0; j < misses.size(); ++j) {
      const int64_t i = misses[j], len = lengths[static_cast<size_t>(i)];
      CachedPrefix entry;
      for (const auto& layer : kv) {
        entry.keys.push_back(layer.key[static_cast<int64_t>(j)].narrow(0, 0, len).to(dtype).clone());
        entry.values.push_back(layer.value[static_cast<int64_t>(j)].narrow(0, 0, len).to(dtype).clone());
      }
      entry.pad_mask = miss_pad[static_cast<int64_t>(j)].narrow(0, 0, len).clone();
      cache_->put(keys[static_cast<size_t>(i)], entry);
      entries[static_cast<size_t>(i)] = std::move(entry);
    }
  }
  // One batch: each sample's entry padded with masked zeros to the longest.
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  KVCache out(entries.front()->keys.size());
  std::vector<at::Tensor> masks;
  for (size_t l = 0; l < out.size(); ++l) {
    std::vector<at::Tensor> ks, vs;
    for (const auto& e : entries) {
      const int64_t extra = longest - e->keys[l].size(0);
      ks.push_back(at::constant_pad_nd(e->keys[l], {0, 0, 0, 0, 0, extra}, 0.0));
      vs.push_back(at::constant_pad_nd(e->values[l], {0, 0, 0, 0, 0, extra}, 0.0));
    }
    out[l] = {at::stack(ks), at::stack(vs)};
  }
  for (const auto& e : entries) masks.push_back(at::constant_pad_nd(e->pad_mask, {0, longest - e->pad_mask.size(0)}, 0.0));
  pad_mask = at::stack(masks);
  return out;
}

at::Tensor SmolVLAPolicy::velocity(const PrefixInputs& in, const at::Tensor& x_t, const at::Tensor& time, PrefixPath path) {
  if (path == PrefixPath::Joint || model_.config().prefix_length > 0)
    return model_.velocity(model_.embed_prefix(in), nullptr, 0, x_t, time);
  if (path == PrefixPath::Cached && !cache_) throw std::logic_error("smolvla: the prefix cache is off");
  at::Tensor frozen_pad;
  const KVCache kv = path == PrefixPath::Cached ? cached_prefix(in, frozen_pad) : frozen_prefix(in, {}, frozen_pad);
  const int64_t b = in.state.size(0), cached_len = frozen_pad.size(1);
  Prefix p;  // only the state token runs through the VLM now
  p.embeddings = model_.embed_state(in.state);
  p.pad_mask = at::cat({frozen_pad, at::ones({b, 1}, frozen_pad.options())}, 1);
  p.att_flags = at::zeros(p.pad_mask.sizes(), p.pad_mask.options().dtype(at::kLong));
  p.att_flags.select(1, cached_len).fill_(1);
  return model_.velocity(p, &kv, cached_len, x_t, time);
}

at::Tensor SmolVLAPolicy::loss(const Batch& batch, at::Generator generator) {
  const Config& c = model_.config();
  const PrefixInputs in = prepare(batch);
  const FlowMatchingDraw d = draw_flow_matching(pad_action(batch.action), generator);
  const at::Tensor v = velocity(in, d.x_t, d.time, training_path());
  if (c.reduction == LossReduction::Unmasked) return flow_matching_loss(v, d.target, {}, LossReduction::Unmasked);
  return flow_matching_loss(v.narrow(-1, 0, c.action_dim), d.target.narrow(-1, 0, c.action_dim), batch.action_is_pad,
                            LossReduction::Masked);
}

at::Tensor SmolVLAPolicy::sample_actions(const Batch& batch, at::Generator generator) {
  at::NoGradGuard no_grad;
  const Config& c = model_.config();
  const PrefixInputs in = prepare(batch);
  const at::Tensor noise =
      at::normal(0.0, 1.0, {batch.size(), c.chunk_size, c.max_action_dim}, generator, at::TensorOptions().dtype(at::kFloat))
          .to(in.state.device());
  return model_.sample_actions(model_.embed_prefix(in), noise).narrow(-1, 0, c.action_dim);
}

void SmolVLAPolicy::write_extra_files(const std::string& dir) {
  if (stats_) write_processor_files(dir, model_.config(), *stats_);
}

ParameterSet SmolVLAPolicy::checkpoint_tensors() {
  // Frozen tensors keep the dtype they came in (BF16 for smolvla_base's backbone): they never
  // change, so nothing is lost. Trained tensors are written as the float32 they train in, so a
  // resumed run continues from exactly the weights it stopped with; LeRobot loads either.
  ParameterSet out;
  for (const auto& [name, t] : model_.parameters()) {
    const at::ScalarType dtype = is_trainable(name) ? at::kFloat : model_.checkpoint_dtype(name);
    out.tensors.push_back(copy_tensor(name, t.detach().to(at::kCPU, dtype)));
  }
  return out;
}

void SmolVLAPolicy::load_checkpoint(const ParameterSet& checkpoint) {
  // Strict, as LeRobot loads: a tensor this configuration lacks means the config does not match.
  std::set<std::string> known;
  for (const auto& [name, t] : model_.parameters()) known.insert(name);
  for (const auto& t : checkpoint.tensors)
    if (!known.count(t.name))
      throw std::runtime_error("tensor '" + t.name + "' has no place in this SmolVLA configuration (check num_vlm_layers, "
                               "num_expert_layers and the backbone config)");
  load_parameter_set(model_.parameters(), checkpoint);
  for (const auto& t : checkpoint.tensors) model_.set_checkpoint_dtype(t.name, aten_dtype(t.dtype));
}

std::unique_ptr<Policy> make_smolvla(const PolicySpec& spec) {
  const Config config = config_from_spec(spec.config, spec.pretrained);
  std::vector<std::string> groups = spec.train.empty() ? default_trainable_groups(config) : spec.train;
  auto policy = std::make_unique<SmolVLAPolicy>(config, groups);
  if (!spec.pretrained.empty())
    if (auto stats = read_processor_stats(spec.pretrained)) policy->set_normalization(stats->state, stats->action);
  std::vector<std::string> problems;
  for (size_t i = 0; i < spec.train.size(); ++i) {
    bool matches = false;
    for (const auto& [name, t] : policy->model().parameters())
      matches = matches || name == spec.train[i] || name.rfind(spec.train[i] + ".", 0) == 0;
    if (!matches)
      problems.push_back("spec.policy.train[" + std::to_string(i) + "]: '" + spec.train[i] +
                         "' names no SmolVLA parameter (groups are checkpoint name prefixes, e.g. "
                         "model.vlm_with_expert.lm_expert)");
  }
  if (!problems.empty()) throw SpecError(problems);
  return policy;
}

}  // namespace zk0::smolvla
