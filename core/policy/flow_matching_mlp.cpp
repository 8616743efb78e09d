#include "core/policy/flow_matching_mlp.h"

#include <torch/torch.h>

#include <cmath>
#include <set>

namespace zk0 {

namespace {

const std::vector<std::string> kGroups = {"state_encoder", "action_in_proj", "time_mlp_in", "time_mlp_out", "layers",
                                          "action_out_proj"};

class FlowMatchingMlp final : public Policy, public torch::nn::Module {
 public:
  FlowMatchingMlp(const FlowMatchingMlpConfig& c, std::vector<std::string> groups) : config_(c) {
    trainable_groups_ = std::move(groups);
    const int64_t chunk_width = c.chunk_size * c.action_dim;
    state_encoder_0_ = register_module("state_encoder_0", torch::nn::Linear(c.state_dim, c.encoder_dim));
    state_encoder_1_ = register_module("state_encoder_1", torch::nn::Linear(c.encoder_dim, c.encoder_dim));
    action_in_proj_ = register_module("action_in_proj", torch::nn::Linear(chunk_width, c.hidden_dim));
    time_mlp_in_ = register_module("time_mlp_in", torch::nn::Linear(c.time_dim, c.hidden_dim));
    time_mlp_out_ = register_module("time_mlp_out", torch::nn::Linear(c.hidden_dim, c.hidden_dim));
    for (int64_t i = 0; i < c.layers; ++i) {
      const int64_t in = (i == 0 ? c.hidden_dim + c.encoder_dim : c.hidden_dim);
      layers_.push_back(register_module("layers_" + std::to_string(i), torch::nn::Linear(in, c.hidden_dim)));
    }
    action_out_proj_ = register_module("action_out_proj", torch::nn::Linear(c.hidden_dim, chunk_width));
    initialise();
  }

  std::string type() const override { return "flow-matching-mlp"; }
  int64_t chunk_size() const override { return config_.chunk_size; }
  bool uses_images() const override { return false; }

  NamedTensors parameters() override {
    NamedTensors out;
    for (const auto& p : named_parameters(true)) out.emplace_back(checkpoint_name(p.key()), p.value());
    return out;
  }

  at::Tensor loss(const Batch& batch, at::Generator generator) override {
    check_batch(batch);
    const FlowMatchingDraw d = draw_flow_matching(batch.action, generator);
    const at::Tensor v = velocity(batch.state, d.x_t, d.time);
    return flow_matching_loss(v, d.target, batch.action_is_pad, config_.reduction);
  }

  at::Tensor sample_actions(const Batch& batch, at::Generator generator) override {
    torch::NoGradGuard no_grad;
    const int64_t b = batch.state.size(0);
    at::Tensor x = at::normal(0.0, 1.0, {b, config_.chunk_size, config_.action_dim}, generator,
                              at::TensorOptions().dtype(at::kFloat))
                       .to(batch.state.device());
    const double dt = -1.0 / static_cast<double>(config_.num_steps);
    const at::Tensor state_embedding = encode_state(batch.state);  // the "prefix": computed once
    for (int64_t step = 0; step < config_.num_steps; ++step) {
      const at::Tensor t = at::full({b}, 1.0 + step * dt, x.options());
      x = x + dt * velocity_from_embedding(state_embedding, x, t);
    }
    return x;
  }

  void to(const at::Device& device) override { torch::nn::Module::to(device); }
  void set_training(bool training) override { train(training); }
  nlohmann::ordered_json config_json() const override { return config_.to_json(); }

 private:
  // "state_encoder_0.weight" -> "state_encoder.0.weight", "layers_2.bias" -> "layers.2.bias"
  static std::string checkpoint_name(std::string key) {
    for (const char* prefix : {"state_encoder_", "layers_"}) {
      const std::string p = prefix;
      if (key.rfind(p, 0) == 0) key[p.size() - 1] = '.';
    }
    return key;
  }

  void initialise() {
    // Each tensor is drawn from its own generator seeded by (init seed, name): the same spec gives
    // the same weights in every process, whatever the construction order.
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : parameters()) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(config_.init_seed, hash_string(name)));
      const int64_t fan_in = tensor.dim() == 2 ? tensor.size(1) : tensor.size(0);
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      tensor.uniform_(-bound, bound, gen);
    }
  }

  void check_batch(const Batch& b) const {
    if (b.state.dim() != 2 || b.state.size(1) != config_.state_dim)
      throw std::invalid_argument("flow-matching-mlp: state must be [B, " + std::to_string(config_.state_dim) + "]");
    if (b.action.dim() != 3 || b.action.size(1) != config_.chunk_size || b.action.size(2) != config_.action_dim)
      throw std::invalid_argument("flow-matching-mlp: action must be [B, " + std::to_string(config_.chunk_size) + ", " +
                                  std::to_string(config_.action_dim) + "]");
  }

  at::Tensor encode_state(const at::Tensor& state) {
    return state_encoder_1_->forward(torch::silu(state_encoder_0_->forward(state)));
  }

  at::Tensor velocity_from_embedding(const at::Tensor& state_embedding, const at::Tensor& x_t, const at::Tensor& time) {
    const at::Tensor time_emb = sinusoidal_time_embedding(time, config_.time_dim);
    const at::Tensor time_hidden = time_mlp_out_->forward(torch::silu(time_mlp_in_->forward(time_emb)));
    at::Tensor h = action_in_proj_->forward(x_t.flatten(1)) + time_hidden;
    h = torch::cat({h, state_embedding}, 1);
    for (auto& layer : layers_) {
      const at::Tensor next = torch::silu(layer->forward(h));
      h = next.size(1) == h.size(1) ? h + next : next;
    }
    return action_out_proj_->forward(h).view({-1, config_.chunk_size, config_.action_dim});
  }

  at::Tensor velocity(const at::Tensor& state, const at::Tensor& x_t, const at::Tensor& time) {
    return velocity_from_embedding(encode_state(state), x_t, time);
  }

  FlowMatchingMlpConfig config_;
  torch::nn::Linear state_encoder_0_{nullptr}, state_encoder_1_{nullptr}, action_in_proj_{nullptr},
      time_mlp_in_{nullptr}, time_mlp_out_{nullptr}, action_out_proj_{nullptr};
  std::vector<torch::nn::Linear> layers_;
};

}  // namespace

FlowMatchingMlpConfig FlowMatchingMlpConfig::from_json(const nlohmann::json& j) {
  FlowMatchingMlpConfig c;
  std::vector<std::string> problems;
  const std::string base = "spec.policy.config.";
  auto read_int = [&](const char* key, int64_t& out, int64_t min) {
    if (!j.contains(key)) return;
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < min)
      problems.push_back(base + key + ": must be an integer of at least " + std::to_string(min));
    else
      out = j[key].get<int64_t>();
  };
  const std::set<std::string> known = {"stateDim", "actionDim", "chunkSize", "encoderDim", "hiddenDim", "layers",
                                       "timeDim", "numSteps", "initSeed", "lossReduction"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key())) problems.push_back(base + it.key() + ": unknown field");
  read_int("stateDim", c.state_dim, 1);
  read_int("actionDim", c.action_dim, 1);
  read_int("chunkSize", c.chunk_size, 1);
  read_int("encoderDim", c.encoder_dim, 1);
  read_int("hiddenDim", c.hidden_dim, 1);
  read_int("layers", c.layers, 1);
  read_int("timeDim", c.time_dim, 2);
  read_int("numSteps", c.num_steps, 1);
  int64_t seed = 0;
  read_int("initSeed", seed, 0);
  c.init_seed = static_cast<uint64_t>(seed);
  if (c.time_dim % 2) problems.push_back(base + "timeDim: must be even");
  if (j.contains("lossReduction")) {
    const auto r = j["lossReduction"].is_string() ? j["lossReduction"].get<std::string>() : "";
    if (r == "masked") c.reduction = LossReduction::Masked;
    else if (r == "unmasked") c.reduction = LossReduction::Unmasked;
    else problems.push_back(base + "lossReduction: must be one of masked, unmasked");
  }
  if (!problems.empty()) throw SpecError(problems);
  return c;
}

nlohmann::json FlowMatchingMlpConfig::to_json() const {
  return {{"stateDim", state_dim},     {"actionDim", action_dim}, {"chunkSize", chunk_size},
          {"encoderDim", encoder_dim}, {"hiddenDim", hidden_dim}, {"layers", layers},
          {"timeDim", time_dim},       {"numSteps", num_steps},   {"initSeed", init_seed},
          {"lossReduction", reduction == LossReduction::Masked ? "masked" : "unmasked"}};
}

std::unique_ptr<Policy> make_flow_matching_mlp(const FlowMatchingMlpConfig& config,
                                               const std::vector<std::string>& trainable_groups) {
  std::vector<std::string> groups = trainable_groups;
  if (groups.empty()) groups = {"action_in_proj", "time_mlp_in", "time_mlp_out", "layers", "action_out_proj"};
  std::vector<std::string> problems;
  for (size_t i = 0; i < groups.size(); ++i)
    if (std::find(kGroups.begin(), kGroups.end(), groups[i]) == kGroups.end()) {
      std::string allowed;
      for (const auto& g : kGroups) allowed += (allowed.empty() ? "" : ", ") + g;
      problems.push_back("spec.policy.train[" + std::to_string(i) + "]: unknown parameter group '" + groups[i] +
                         "' (flow-matching-mlp has " + allowed + ")");
    }
  if (!problems.empty()) throw SpecError(problems);
  return std::make_unique<FlowMatchingMlp>(config, groups);
}

}  // namespace zk0
