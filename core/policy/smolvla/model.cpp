#include "core/policy/smolvla/model.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

#include "core/util/seed.h"

namespace zk0::smolvla {

namespace {

const std::string kVision = "model.vlm_with_expert.vlm.model.vision_model.";
const std::string kText = "model.vlm_with_expert.vlm.model.text_model.";
const std::string kExpert = "model.vlm_with_expert.lm_expert.";

// Activations decide the compute dtype: float32 on CPU, bfloat16 on CUDA, where the frozen
// backbone is stored in bfloat16 and the trainable weights' float32 master copies are cast here.
at::Tensor project(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = {}) {
  const auto dtype = x.scalar_type();
  return at::linear(x, w.scalar_type() == dtype ? w : w.to(dtype), !b.defined() || b.scalar_type() == dtype ? b : b.to(dtype));
}

// LlamaRMSNorm: normalise in float32, cast back, then scale.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
  return weight.to(x.scalar_type()) * normed.to(x.scalar_type());
}

}  // namespace

at::Tensor make_att_2d_masks(const at::Tensor& pad_mask, const at::Tensor& att_flags) {
  const at::Tensor cumsum = att_flags.to(at::kLong).cumsum(1);
  const at::Tensor causal = cumsum.unsqueeze(1) <= cumsum.unsqueeze(2);
  const at::Tensor pad = pad_mask.unsqueeze(1).logical_and(pad_mask.unsqueeze(2));
  return causal.logical_and(pad);
}

at::Tensor resize_with_pad(const at::Tensor& images, int64_t width, int64_t height) {
  const int64_t h = images.size(2), w = images.size(3);
  if (h == height && w == width) return images;
  const double ratio = std::max(static_cast<double>(w) / width, static_cast<double>(h) / height);
  const auto resized_h = static_cast<int64_t>(h / ratio), resized_w = static_cast<int64_t>(w / ratio);
  const at::Tensor resized = at::upsample_bilinear2d(images, {resized_h, resized_w}, /*align_corners=*/false);
  return at::constant_pad_nd(resized, {std::max<int64_t>(0, width - resized_w), 0, std::max<int64_t>(0, height - resized_h), 0},
                             0.0);
}

// ---------------------------------------------------------------------------------------------
// Parameters, named as in LeRobot's model.safetensors (§2.4).

at::Tensor& Model::add(const std::string& name, std::vector<int64_t> shape, at::ScalarType checkpoint_dtype) {
  parameters_.emplace_back(name, at::empty(shape, at::kFloat));
  checkpoint_dtypes_[name] = checkpoint_dtype;
  return parameters_.back().second;
}

Model::Linear Model::add_linear(const std::string& name, int64_t in, int64_t out, bool bias, at::ScalarType dtype) {
  Linear l;
  l.weight = add(name + ".weight", {out, in}, dtype);
  if (bias) l.bias = add(name + ".bias", {out}, dtype);
  return l;
}

Model::DecoderLayer Model::add_decoder_layer(const std::string& p, int64_t hidden, int64_t intermediate, int64_t kv_in) {
  const BackboneConfig& b = config_.backbone;
  const int64_t q_width = b.text_heads * b.head_dim, kv_width = b.text_kv_heads * b.head_dim;
  // The expert's cross-attention k/v projections read the VLM's keys/values (kv_in = kv_width);
  // LeRobot re-creates them after casting, so the checkpoint keeps them in float32.
  const at::ScalarType kv_dtype = kv_in == hidden ? at::kBFloat16 : at::kFloat;
  DecoderLayer l;
  l.input_norm = add(p + "input_layernorm.weight", {hidden}, at::kBFloat16);
  l.post_norm = add(p + "post_attention_layernorm.weight", {hidden}, at::kBFloat16);
  l.q = add_linear(p + "self_attn.q_proj", hidden, q_width, false, at::kBFloat16);
  l.k = add_linear(p + "self_attn.k_proj", kv_in, kv_width, false, kv_dtype);
  l.v = add_linear(p + "self_attn.v_proj", kv_in, kv_width, false, kv_dtype);
  l.o = add_linear(p + "self_attn.o_proj", q_width, hidden, false, at::kBFloat16);
  l.gate = add_linear(p + "mlp.gate_proj", hidden, intermediate, false, at::kBFloat16);
  l.up = add_linear(p + "mlp.up_proj", hidden, intermediate, false, at::kBFloat16);
  l.down = add_linear(p + "mlp.down_proj", intermediate, hidden, false, at::kBFloat16);
  return l;
}

Model::Model(const Config& config) : config_(config) {
  const BackboneConfig& b = config_.backbone;
  const auto bf16 = at::kBFloat16;
  const int64_t patches = (b.image_size / b.patch_size) * (b.image_size / b.patch_size);
  patch_w_ = add(kVision + "embeddings.patch_embedding.weight", {b.vision_hidden, 3, b.patch_size, b.patch_size}, bf16);
  patch_b_ = add(kVision + "embeddings.patch_embedding.bias", {b.vision_hidden}, bf16);
  position_embedding_ = add(kVision + "embeddings.position_embedding.weight", {patches, b.vision_hidden}, bf16);
  for (int64_t i = 0; i < b.vision_layers; ++i) {
    const std::string p = kVision + "encoder.layers." + std::to_string(i) + ".";
    VisionLayer l;
    l.ln1_w = add(p + "layer_norm1.weight", {b.vision_hidden}, bf16);
    l.ln1_b = add(p + "layer_norm1.bias", {b.vision_hidden}, bf16);
    l.ln2_w = add(p + "layer_norm2.weight", {b.vision_hidden}, bf16);
    l.ln2_b = add(p + "layer_norm2.bias", {b.vision_hidden}, bf16);
    l.q = add_linear(p + "self_attn.q_proj", b.vision_hidden, b.vision_hidden, true, bf16);
    l.k = add_linear(p + "self_attn.k_proj", b.vision_hidden, b.vision_hidden, true, bf16);
    l.v = add_linear(p + "self_attn.v_proj", b.vision_hidden, b.vision_hidden, true, bf16);
    l.out = add_linear(p + "self_attn.out_proj", b.vision_hidden, b.vision_hidden, true, bf16);
    l.fc1 = add_linear(p + "mlp.fc1", b.vision_hidden, b.vision_intermediate, true, bf16);
    l.fc2 = add_linear(p + "mlp.fc2", b.vision_intermediate, b.vision_hidden, true, bf16);
    vision_layers_.push_back(l);
  }
  post_ln_w_ = add(kVision + "post_layernorm.weight", {b.vision_hidden}, bf16);
  post_ln_b_ = add(kVision + "post_layernorm.bias", {b.vision_hidden}, bf16);
  connector_w_ = add("model.vlm_with_expert.vlm.model.connector.modality_projection.proj.weight",
                     {b.text_hidden, b.vision_hidden * b.scale_factor * b.scale_factor}, bf16);
  embed_tokens_ = add(kText + "embed_tokens.weight", {b.vocab_size, b.text_hidden}, bf16);
  for (int64_t i = 0; i < config_.vlm_layers(); ++i)
    text_layers_.push_back(add_decoder_layer(kText + "layers." + std::to_string(i) + ".", b.text_hidden,
                                             b.text_intermediate, b.text_hidden));
  text_norm_ = add(kText + "norm.weight", {b.text_hidden}, bf16);
  // Unused by SmolVLA, but part of the checkpoint LeRobot loads strictly.
  lm_head_ = add("model.vlm_with_expert.vlm.lm_head.weight", {b.vocab_size, b.text_hidden}, bf16);

  const int64_t eh = config_.expert_hidden();
  for (int64_t i = 0; i < config_.expert_layers(); ++i) {
    const bool cross = config_.is_cross_attention_layer(i);
    expert_layers_.push_back(add_decoder_layer(kExpert + "layers." + std::to_string(i) + ".", eh,
                                               config_.expert_intermediate(),
                                               cross ? b.text_kv_heads * b.head_dim : eh));
  }
  expert_norm_ = add(kExpert + "norm.weight", {eh}, bf16);

  const auto f32 = at::kFloat;
  state_proj_ = add_linear("model.state_proj", config_.max_state_dim, b.text_hidden, true, f32);
  action_in_proj_ = add_linear("model.action_in_proj", config_.max_action_dim, eh, true, f32);
  action_out_proj_ = add_linear("model.action_out_proj", eh, config_.max_action_dim, true, f32);
  action_time_mlp_in_ = add_linear("model.action_time_mlp_in", 2 * eh, eh, true, f32);
  action_time_mlp_out_ = add_linear("model.action_time_mlp_out", eh, eh, true, f32);
  initialise();
}

void Model::initialise() {
  at::NoGradGuard no_grad;
  for (auto& [name, t] : parameters_) {
    const bool is_norm = name.find("norm") != std::string::npos;
    if (is_norm) {
      name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0 ? t.zero_() : t.fill_(1.0);
      continue;
    }
    auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(config_.init_seed, hash_string(name)));
    if (name.find("embed_tokens") != std::string::npos || name.find("position_embedding") != std::string::npos) {
      t.normal_(0.0, 0.02, gen);
      continue;
    }
    const int64_t fan_in = t.dim() >= 2 ? t.numel() / t.size(0) : t.size(0);
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    t.uniform_(-bound, bound, gen);
  }
}

// ---------------------------------------------------------------------------------------------
// Vision tower and connector (§3.3).

at::Tensor Model::vision_tower(const at::Tensor& pixels) {
  const BackboneConfig& b = config_.backbone;
  const int64_t batch = pixels.size(0), heads = b.vision_heads, hd = b.vision_hidden / heads;
  at::Tensor x = at::conv2d(pixels.to(patch_w_.scalar_type()), patch_w_, patch_b_, {b.patch_size, b.patch_size});
  x = x.flatten(2).transpose(1, 2) + patch_positions(x.size(2), x.size(3));
  const int64_t n = x.size(1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  for (const VisionLayer& l : vision_layers_) {
    const at::Tensor h = at::layer_norm(x, {b.vision_hidden}, l.ln1_w, l.ln1_b, b.vision_norm_eps);
    const auto split = [&](const Linear& p) { return project(h, p.weight, p.bias).view({batch, n, heads, hd}).transpose(1, 2); };
    const at::Tensor q = split(l.q), k = split(l.k), v = split(l.v);
    const at::Tensor p = at::softmax(at::matmul(q, k.transpose(2, 3)) * scale, -1, at::kFloat).to(q.scalar_type());
    const at::Tensor att = at::matmul(p, v).transpose(1, 2).reshape({batch, n, b.vision_hidden});
    x = x + project(att, l.out.weight, l.out.bias);
    const at::Tensor h2 = at::layer_norm(x, {b.vision_hidden}, l.ln2_w, l.ln2_b, b.vision_norm_eps);
    x = x + project(at::gelu(project(h2, l.fc1.weight, l.fc1.bias), "tanh"), l.fc2.weight, l.fc2.bias);
  }
  return at::layer_norm(x, {b.vision_hidden}, post_ln_w_, post_ln_b_, b.vision_norm_eps);
}

at::Tensor Model::patch_positions(int64_t rows, int64_t cols) {
  const int64_t per_side = config_.backbone.image_size / config_.backbone.patch_size;
  if (rows == per_side && cols == per_side) return position_embedding_;
  // Another grid than the tower's own: each patch takes the embedding of the bucket its
  // fractional coordinate falls in, computed as torch computes it (float32 arange and
  // bucketize, right=True), so that positions match transformers' bit for bit.
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor boundaries = at::arange(1.0 / per_side, 1.0, 1.0 / per_side, f32);
  const auto buckets = [&](int64_t n) {
    const double step = static_cast<double>(static_cast<float>(1.0 / static_cast<double>(n)));
    return at::bucketize(at::arange(0.0, 1.0 - 1e-6, step, f32), boundaries, /*out_int32=*/false, /*right=*/true);
  };
  const at::Tensor ids = (buckets(rows).unsqueeze(1) * per_side + buckets(cols).unsqueeze(0)).flatten();
  return position_embedding_.index_select(0, ids.to(position_embedding_.device()));
}

at::Tensor Model::embed_image(const at::Tensor& image) {
  const BackboneConfig& b = config_.backbone;
  at::Tensor x = vision_tower(image);
  // Pixel shuffle exactly as transformers' SmolVLMConnector: [B, side², D] -> [B, (side/s)², D·s²].
  const int64_t batch = x.size(0), seq = x.size(1), d = x.size(2), s = b.scale_factor;
  const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(seq))));
  x = x.view({batch, side, side, d}).view({batch, side, side / s, d * s}).permute({0, 2, 1, 3});
  x = x.reshape({batch, side / s, side / s, d * s * s}).permute({0, 2, 1, 3}).reshape({batch, seq / (s * s), d * s * s});
  x = project(x, connector_w_);
  return x * std::sqrt(static_cast<double>(x.size(-1)));
}

at::Tensor Model::embed_language(const at::Tensor& tokens) {
  return at::embedding(embed_tokens_, tokens) * std::sqrt(static_cast<double>(config_.backbone.text_hidden));
}

at::Tensor Model::embed_state(const at::Tensor& state) {
  return project(state.to(at::kFloat), state_proj_.weight, state_proj_.bias).unsqueeze(1).to(compute_dtype());
}

Prefix Model::embed_frozen_prefix(const PrefixInputs& in) {
  std::vector<at::Tensor> embeddings, pads;
  // add_image_special_tokens frames every camera with token embeddings, unscaled and never
  // masked (even around an empty camera), as LeRobot's embed_prefix does.
  const auto special = [&](std::initializer_list<int64_t> ids, int64_t batch) {
    const at::Tensor tokens = at::tensor(std::vector<int64_t>(ids), at::kLong).to(embed_tokens_.device());
    embeddings.push_back(at::embedding(embed_tokens_, tokens).unsqueeze(0).expand({batch, -1, -1}));
    pads.push_back(at::ones({batch, static_cast<int64_t>(ids.size())}, at::TensorOptions().dtype(at::kBool).device(tokens.device())));
  };
  for (size_t i = 0; i < in.images.size(); ++i) {
    const int64_t batch = in.images[i].size(0);
    if (config_.add_image_special_tokens) special({config_.fake_image_token_id, config_.global_image_token_id}, batch);
    at::Tensor e = embed_image(in.images[i]);
    embeddings.push_back(e);
    pads.push_back(in.image_masks[i].unsqueeze(1).expand({e.size(0), e.size(1)}));
    if (config_.add_image_special_tokens) special({config_.fake_image_token_id}, batch);
  }
  embeddings.push_back(embed_language(in.lang_tokens));
  pads.push_back(in.lang_mask);
  Prefix p;
  p.embeddings = at::cat(embeddings, 1);
  p.pad_mask = at::cat(pads, 1).to(at::kBool);
  p.att_flags = at::zeros(p.pad_mask.sizes(), p.pad_mask.options().dtype(at::kLong));
  return p;
}

Prefix Model::embed_prefix(const PrefixInputs& in) {
  Prefix p = embed_frozen_prefix(in);
  const int64_t batch = in.state.size(0);
  p.embeddings = at::cat({p.embeddings, embed_state(in.state)}, 1);
  p.pad_mask = at::cat({p.pad_mask, at::ones({batch, 1}, p.pad_mask.options())}, 1);
  p.att_flags = at::cat({p.att_flags, at::ones({batch, 1}, p.att_flags.options())}, 1);  // the state's own block
  const int64_t len = p.pad_mask.size(1);
  if (len < config_.prefix_length) {
    const int64_t extra = config_.prefix_length - len;
    p.embeddings = at::constant_pad_nd(p.embeddings, {0, 0, 0, extra}, 0.0);
    p.pad_mask = at::constant_pad_nd(p.pad_mask, {0, extra}, 0.0);
    p.att_flags = at::constant_pad_nd(p.att_flags, {0, extra}, 0.0);
  }
  return p;
}

at::Tensor Model::embed_suffix(const at::Tensor& x_t, const at::Tensor& time) {
  const at::Tensor action = project(x_t.to(at::kFloat), action_in_proj_.weight, action_in_proj_.bias);
  const at::Tensor time_emb = sinusoidal_time_embedding(time, config_.expert_hidden(), config_.min_period, config_.max_period)
                                  .to(action.scalar_type())
                                  .unsqueeze(1)
                                  .expand_as(action);
  at::Tensor h = project(at::cat({action, time_emb}, 2), action_time_mlp_in_.weight, action_time_mlp_in_.bias);
  return project(at::silu(h), action_time_mlp_out_.weight, action_time_mlp_out_.bias).to(compute_dtype());
}

// ---------------------------------------------------------------------------------------------
// The transformer (§3.4-3.5).

at::Tensor Model::rope(const at::Tensor& x, const at::Tensor& positions) const {
  // SmolVLA's own RoPE: base 10000 (not the backbone's rope_theta), split halves, float32.
  const int64_t d = x.size(-1), half = d / 2;
  const auto f32 = x.options().dtype(at::kFloat);
  const at::Tensor timescale = at::pow(10000.0, at::arange(half, f32) * (2.0 / static_cast<double>(d)));
  const at::Tensor radians = (positions.to(at::kFloat).unsqueeze(-1) / timescale).unsqueeze(2);  // [B, L, 1, half]
  const at::Tensor sin = radians.sin(), cos = radians.cos();
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor x1 = xf.narrow(-1, 0, half), x2 = xf.narrow(-1, half, half);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1).to(x.scalar_type());
}

// q [B, Lq, H, D], k/v [B, Lk, Hkv, D], mask [B, Lq, Lk] -> [B, Lq, H·D]. Masked scores take the
// float32 minimum, not -inf, so a fully masked row stays finite (§5.6).
at::Tensor Model::attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) const {
  const int64_t batch = q.size(0), lq = q.size(1), heads = q.size(2), d = q.size(3);
  const int64_t kv_heads = k.size(2), groups = heads / kv_heads, lk = k.size(1);
#if TORCH_VERSION_MAJOR >= 2
  // Fused attention (flash / memory-efficient kernels) with an additive finite mask: -1e30 is
  // finite in bfloat16 too (float32's lowest would round to -inf there) and still gives masked
  // keys a probability of exactly 0.
  const at::Tensor bias = at::zeros({batch, 1, lq, lk}, q.options()).masked_fill(mask.logical_not().unsqueeze(1), -1e30);
  const at::Tensor out = at::scaled_dot_product_attention(q.transpose(1, 2), k.repeat_interleave(groups, 2).transpose(1, 2),
                                                          v.repeat_interleave(groups, 2).transpose(1, 2), bias);
  return out.transpose(1, 2).reshape({batch, lq, heads * d});
#else
  // Grouped-query attention without repeating K/V: the query heads sharing a kv head are
  // stacked along the sequence, so one matmul per kv head serves them all.
  const at::Tensor qg = q.to(at::kFloat).view({batch, lq, kv_heads, groups, d}).permute({0, 2, 3, 1, 4}).reshape(
      {batch, kv_heads, groups * lq, d});
  const at::Tensor kt = k.to(at::kFloat).permute({0, 2, 3, 1});  // [B, Hkv, D, Lk]
  at::Tensor scores = (at::matmul(qg, kt) * (1.0 / std::sqrt(static_cast<double>(d)))).view({batch, kv_heads, groups, lq, lk});
  scores = scores.masked_fill(mask.logical_not().view({batch, 1, 1, lq, lk}), std::numeric_limits<float>::lowest());
  const at::Tensor p = at::softmax(scores, -1).to(v.scalar_type()).view({batch, kv_heads, groups * lq, lk});
  const at::Tensor out = at::matmul(p, v.permute({0, 2, 1, 3}));  // [B, Hkv, G·Lq, D]
  return out.view({batch, kv_heads, groups, lq, d}).permute({0, 3, 1, 2, 4}).reshape({batch, lq, heads * d});
#endif
}

at::Tensor Model::mlp(const DecoderLayer& l, const at::Tensor& x) const {
  return project(at::silu(project(x, l.gate.weight)) * project(x, l.up.weight), l.down.weight);
}

at::Tensor Model::heads(const Linear& proj, const at::Tensor& normed) const {
  const at::Tensor out = project(normed, proj.weight);
  return out.view({out.size(0), out.size(1), -1, config_.backbone.head_dim});
}

at::Tensor Model::run_layers(const KVCache* cached, at::Tensor x_p, at::Tensor x_s, const at::Tensor& mask,
                             const at::Tensor& positions, KVCache* fill) {
  const BackboneConfig& b = config_.backbone;
  const int64_t cached_len = cached ? cached->front().key.size(1) : 0;
  const int64_t n_prefix = x_p.defined() ? x_p.size(1) : 0;
  const int64_t n_suffix = x_s.defined() ? x_s.size(1) : 0;
  if (fill) fill->assign(text_layers_.size(), {});
  for (size_t li = 0; li < text_layers_.size(); ++li) {
    const auto layer = static_cast<int64_t>(li);
    const DecoderLayer& vl = text_layers_[li];
    const int64_t e = config_.expert_layer_for(layer);
    const DecoderLayer* el = (x_s.defined() && e >= 0) ? &expert_layers_[static_cast<size_t>(e)] : nullptr;
    at::Tensor att_p, att_s;
    const auto prefix_kv = [&](const at::Tensor& k, const at::Tensor& v) {
      if (!cached) return LayerKV{k, v};
      const LayerKV& c = (*cached)[li];
      return LayerKV{at::cat({c.key.to(k.scalar_type()), k}, 1), at::cat({c.value.to(v.scalar_type()), v}, 1)};
    };
    // After the last layer only the expert's stream is read: the prefix gives its keys and
    // values there and nothing else.
    const bool prefix_queries = x_p.defined() && li + 1 < text_layers_.size();
    if (fill || !config_.is_cross_attention_layer(layer)) {
      // Self-attention: both streams' tokens in one sequence under the joint mask.
      std::vector<at::Tensor> qs, ks, vs;
      if (x_p.defined()) {
        const at::Tensor h = rms_norm(x_p, vl.input_norm, b.rms_norm_eps);
        if (prefix_queries) qs.push_back(heads(vl.q, h));
        ks.push_back(heads(vl.k, h)), vs.push_back(heads(vl.v, h));
      }
      if (el) {
        const at::Tensor h = rms_norm(x_s, el->input_norm, b.rms_norm_eps);
        qs.push_back(heads(el->q, h)), ks.push_back(heads(el->k, h)), vs.push_back(heads(el->v, h));
      }
      const int64_t lk = n_prefix + (el ? n_suffix : 0);
      const int64_t q_from = prefix_queries ? 0 : n_prefix, lq = lk - q_from;
      const LayerKV kv = prefix_kv(rope(at::cat(ks, 1), positions.narrow(1, 0, lk)), at::cat(vs, 1));
      if (fill) (*fill)[li] = kv;
      if (lq > 0) {
        const at::Tensor q = rope(at::cat(qs, 1), positions.narrow(1, q_from, lq));
        const at::Tensor att = attention(q, kv.key, kv.value, mask.narrow(1, q_from, lq).narrow(2, 0, cached_len + lk));
        if (prefix_queries) att_p = att.narrow(1, 0, n_prefix);
        if (el) att_s = att.narrow(1, prefix_queries ? n_prefix : 0, n_suffix);
      }
    } else {
      // Cross-attention: the prefix attends to itself; the expert's queries attend to this
      // layer's VLM keys/values through its own k/v projections (keys not re-rotated).
      LayerKV kv = cached ? (*cached)[li] : LayerKV{};
      if (x_p.defined()) {
        const at::Tensor h = rms_norm(x_p, vl.input_norm, b.rms_norm_eps);
        const at::Tensor pos = positions.narrow(1, 0, n_prefix);
        kv = prefix_kv(rope(heads(vl.k, h), pos), heads(vl.v, h));
        if (prefix_queries)
          att_p = attention(rope(heads(vl.q, h), pos), kv.key, kv.value,
                            mask.narrow(1, 0, n_prefix).narrow(2, 0, cached_len + n_prefix));
      }
      if (el) {
        const int64_t lk = kv.key.size(1);
        const at::Tensor h = rms_norm(x_s, el->input_norm, b.rms_norm_eps);
        at::Tensor pos = positions.narrow(1, n_prefix, n_suffix);
        pos = pos - std::get<0>(pos.min(1, true));
        const at::Tensor q = rope(heads(el->q, h), pos);
        const at::Tensor k = heads(el->k, kv.key.reshape({kv.key.size(0), lk, -1}));
        const at::Tensor v = heads(el->v, kv.value.reshape({kv.value.size(0), lk, -1}));
        att_s = attention(q, k, v, mask.narrow(1, n_prefix, n_suffix).narrow(2, 0, lk));
      }
    }
    const auto residual_block = [&](const DecoderLayer& l, const at::Tensor& x, const at::Tensor& att) {
      const at::Tensor h = x + project(att, l.o.weight);
      return h + mlp(l, rms_norm(h, l.post_norm, b.rms_norm_eps));
    };
    if (prefix_queries) x_p = residual_block(vl, x_p, att_p);
    if (el) x_s = residual_block(*el, x_s, att_s);
  }
  return x_s.defined() ? rms_norm(x_s, expert_norm_, b.rms_norm_eps) : at::Tensor();
}

KVCache Model::prefill(const Prefix& prefix) {
  KVCache cache;
  const at::Tensor positions = prefix.pad_mask.to(at::kLong).cumsum(1) - 1;
  run_layers(nullptr, prefix.embeddings, {}, make_att_2d_masks(prefix.pad_mask, prefix.att_flags), positions, &cache);
  return cache;
}

at::Tensor Model::velocity(const Prefix& prefix, const KVCache* cached, int64_t cached_len, const at::Tensor& x_t,
                           const at::Tensor& time) {
  const int64_t batch = x_t.size(0), horizon = x_t.size(1), len = prefix.pad_mask.size(1);
  const at::Tensor suffix = embed_suffix(x_t, time);
  const auto bool_opts = prefix.pad_mask.options();
  const at::Tensor pad = at::cat({prefix.pad_mask, at::ones({batch, horizon}, bool_opts)}, 1);
  const at::Tensor flags = at::cat({prefix.att_flags, at::ones({batch, horizon}, bool_opts.dtype(at::kLong))}, 1);
  const at::Tensor positions = pad.to(at::kLong).cumsum(1) - 1;
  const at::Tensor mask = make_att_2d_masks(pad, flags);
  // The embeddings may cover only the tokens after the cached ones.
  const int64_t embedded_from = len - prefix.embeddings.size(1);
  const at::Tensor live_prefix =
      cached_len < len ? prefix.embeddings.narrow(1, cached_len - embedded_from, len - cached_len) : at::Tensor();
  const at::Tensor out = run_layers(cached_len > 0 ? cached : nullptr, live_prefix, suffix,
                                    mask.narrow(1, cached_len, len - cached_len + horizon),
                                    positions.narrow(1, cached_len, len - cached_len + horizon), nullptr);
  return project(out.narrow(1, out.size(1) - config_.chunk_size, config_.chunk_size).to(at::kFloat),
                action_out_proj_.weight, action_out_proj_.bias);
}

at::Tensor Model::sample_actions(const Prefix& prefix, const at::Tensor& noise) {
  at::NoGradGuard no_grad;
  const KVCache cache = prefill(prefix);
  const int64_t len = prefix.pad_mask.size(1);
  const double dt = -1.0 / static_cast<double>(config_.num_steps);
  at::Tensor x = noise;
  for (int64_t step = 0; step < config_.num_steps; ++step) {
    const at::Tensor t = at::full({noise.size(0)}, static_cast<float>(1.0 + step * dt), noise.options().dtype(at::kFloat));
    x = x + dt * velocity(prefix, &cache, len, x, t);
  }
  return x;
}

}  // namespace zk0::smolvla
