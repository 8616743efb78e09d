#include "worker/trainer.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "core/data/batch_loader.h"
#include "core/data/open_dataset.h"
#include "core/tensor/safetensors.h"
#include "core/util/log.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

namespace zk0 {

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// Turns autocast to bf16 on or off for one device type; LibTorch 2.4 replaced the per-device
// setters with ones that take the device type.
void set_bf16_autocast(at::DeviceType device, bool enabled) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  if (enabled) at::autocast::set_autocast_dtype(device, at::kBFloat16);
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (device == at::kCUDA) {
    if (enabled) at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(enabled);
  } else {
    if (enabled) at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

// bf16 autocast for the forward pass where the spec asks for it; fp32 master weights and
// optimizer state either way.
class AutocastScope {
 public:
  AutocastScope(Precision precision, const at::Device& device)
      : enabled_(precision == Precision::BF16), device_(device.type()) {
    if (enabled_) set_bf16_autocast(device_, true);
  }
  ~AutocastScope() {
    if (!enabled_) return;
    set_bf16_autocast(device_, false);
    at::autocast::clear_cache();
  }

 private:
  bool enabled_;
  at::DeviceType device_;
};

}  // namespace

double learning_rate_at(const TrainingSpec& spec, int step, int steps) {
  if (step < spec.warmup_steps) return spec.learning_rate * (step + 1) / (spec.warmup_steps + 1);
  if (spec.lr_schedule == LrScheduleType::Constant) return spec.learning_rate;
  const int decay_steps = std::max(1, steps - spec.warmup_steps - 1);
  const double progress = std::min(1.0, static_cast<double>(step - spec.warmup_steps) / decay_steps);
  const double min_lr = spec.learning_rate * spec.min_lr_ratio;
  return min_lr + 0.5 * (spec.learning_rate - min_lr) * (1 + std::cos(M_PI * progress));
}

LocalTrainer::LocalTrainer(const FederationSpec& spec, const ClientSpec& client, std::string state_dir,
                           std::shared_ptr<PolicyPool> pool)
    : spec_(spec), client_(client), pool_(std::move(pool)), state_dir_(std::move(state_dir)) {
  if (spec.training.optimizer_state == OptimizerState::Keep && state_dir_.empty())
    throw SpecError({"spec.training.optimizer.state: keep needs the worker's state directory (zk0-worker --state-dir)"});
  if (!pool_) pool_ = std::make_shared<PolicyPool>(spec, training_device(spec, client), 1);
}

LocalTrainer::~LocalTrainer() = default;

void LocalTrainer::open_dataset() {
  dataset_ = zk0::open_dataset(client_.dataset, pool_->chunk_size(), pool_->uses_images());
  if (spec_.training.privacy.enabled)
    sample_privacy_ = std::make_unique<SampleLevelPrivacy>(spec_, dataset_->size(), state_dir_, client_.name);
}

void LocalTrainer::restore_optimizer(FlatAdamW& optimizer, int round) {
  if (spec_.training.optimizer_state == OptimizerState::Reset) {
    optimizer.reset();
    return;
  }
  // The newest state from a round before this one: a round repeated after an aggregator restart
  // starts from the moments it started from the first time.
  int best = 0;
  fs::path best_file;
  const fs::path dir = fs::path(state_dir_) / "optimizer";
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir)) {
      int r = 0;
      if (std::sscanf(e.path().filename().c_str(), "round_%d.safetensors", &r) == 1 && r < round && r > best) {
        best = r;
        best_file = e.path();
      }
    }
  if (best == 0) {
    optimizer.reset();
    return;
  }
  std::map<std::string, std::string> meta;
  const ParameterSet saved = read_safetensors(best_file.string(), &meta);
  FlatAdamW::State state{to_aten(saved.at("exp_avg")), to_aten(saved.at("exp_avg_sq")), std::stoll(meta.at("steps"))};
  if (meta.at("layout") != layout().digest_hex())
    throw std::runtime_error(best_file.string() + ": optimizer state of another parameter layout");
  optimizer.load_state(state);
  log_info("optimizer_restored", {kv("round", round), kv("from_round", best), kv("steps", state.steps)});
}

void LocalTrainer::save_optimizer(const FlatAdamW& optimizer, const RoundTask& task) {
  if (spec_.training.optimizer_state == OptimizerState::Reset) return;
  const fs::path dir = fs::path(state_dir_) / "optimizer";
  fs::create_directories(dir);
  const FlatAdamW::State state = optimizer.state();
  ParameterSet set;
  set.tensors.push_back(copy_tensor("exp_avg", state.exp_avg));
  set.tensors.push_back(copy_tensor("exp_avg_sq", state.exp_avg_sq));
  char name[48];
  std::snprintf(name, sizeof name, "round_%04d.safetensors", task.round);
  write_safetensors((dir / name).string(), set,
                    {{"steps", std::to_string(state.steps)}, {"round", std::to_string(task.round)},
                     {"trained_from", task.base_digest}, {"layout", layout().digest_hex()}});
  // Two are enough: the one this round started from (should the round be repeated) and this one.
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (size_t i = 0; i + 2 < files.size(); ++i) fs::remove(files[i]);
}

RoundResult LocalTrainer::train_round(const ParameterSet& global, const RoundTask& task, const std::atomic<bool>* abandon,
                                      const std::function<void()>& progressed) {
  if (!dataset_) throw std::logic_error("train_round before open_dataset");
  const int local_steps = task.local_steps;
  const double proximal_mu = task.proximal_mu;
  const uint64_t seed = task.seed;
  const auto start = Clock::now();
  // Waiting for a slot while other virtual clients train is progress of the process, not a
  // stall, and not this client's training time.
  if (sample_privacy_)
    if (const std::string spent = sample_privacy_->budget_exhausted(local_steps); !spent.empty()) throw PrivacyBudgetSpent(spent);
  const PolicyPool::Lease slot = pool_->acquire(progressed);
  const auto slot_start = Clock::now();
  Policy& policy = *slot->policy;
  FlatAdamW& optimizer = *slot->optimizer;
  const at::Device device = pool_->device();
  NamedTensors trainable = policy.trainable_parameters();
  load_parameter_set(trainable, global);
  restore_optimizer(optimizer, task.round);
  const at::Tensor anchor = optimizer.parameters().clone();  // on the compute device for the whole round
  policy.set_training(true);
  std::optional<ShuffledSampler> sampler;
  if (!sample_privacy_) sampler.emplace(dataset_->size(), spec_.training.batch_size, seed);
  int sampled_steps = 0;
  const auto next_indices = [&] {
    return sample_privacy_ ? sample_privacy_->sample(task.round, sampled_steps++) : sampler->next_batch();
  };
  const int workers = BatchLoader::default_workers();
  BatchLoader loader(*dataset_, next_indices, local_steps, workers, 2 * workers);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed, 0xF10));
  double loss_sum = 0, policy_sum = 0, prox_sum = 0, grad_sum = 0, data_seconds = 0, lr = 0;
  RoundResult out;
  for (int step = 0; step < local_steps; ++step) {
    const auto step_start = Clock::now();
    if (abandon && *abandon) throw RoundAbandoned("abandoned at local step " + std::to_string(step));
    const auto data_start = Clock::now();  // time the trainer waits for data, not the loaders' work
    const Batch batch = loader.next().to(device);
    data_seconds += std::chrono::duration<double>(Clock::now() - data_start).count();
    progressed();

    lr = learning_rate_at(spec_.training, step, local_steps);
    double policy_value = 0, grad_norm = 0;
    if (sample_privacy_) {
      const PrivateGradient g = private_gradient(
          optimizer, batch, *sample_privacy_,
          [&](const Batch& one) {
            AutocastScope autocast(spec_.training.precision, device);
            return policy.loss(one, generator);
          },
          task.round, step);
      policy_value = g.mean_loss;
      grad_norm = g.mean_sample_norm;
    } else {
      at::Tensor policy_loss;
      {
        AutocastScope autocast(spec_.training.precision, device);
        policy_loss = policy.loss(batch, generator);
      }
      optimizer.zero_grad();
      policy_loss.backward();
      policy_value = policy_loss.item<double>();
    }
    // FedProx's mu/2 * ||w - w_global||^2 adds its gradient directly: no autograd graph over
    // every trainable parameter. (It reads no data: under DP-SGD it needs no noise.)
    const double proximal = proximal_mu > 0 ? optimizer.add_proximal_gradient(anchor, proximal_mu) : 0.0;
    const double total_value = policy_value + proximal;
    if (!std::isfinite(total_value))
      throw std::runtime_error("training diverged: loss is " + std::to_string(total_value) + " at local step " +
                               std::to_string(step));
    if (!sample_privacy_) grad_norm = optimizer.grad_norm();
    optimizer.step(lr, sample_privacy_ ? 1.0 : clip_scale(grad_norm, spec_.training.grad_clip_norm));
    loss_sum += total_value;
    policy_sum += policy_value;
    prox_sum += proximal;
    grad_sum += grad_norm;
    out.step_seconds.push_back(std::chrono::duration<double>(Clock::now() - step_start).count());
    progressed();
  }
  double update_sq = 0;
  {
    torch::NoGradGuard no_grad;
    const at::Tensor update = optimizer.parameters() - anchor;
    update_sq = update.dot(update).item<double>();
    const double norm = std::sqrt(update_sq);
    if (task.clip_norm > 0 && norm > task.clip_norm) {
      // A hair inside the norm, so that float rounding never puts it above what the aggregator checks.
      const double scale = task.clip_norm * (1 - 1e-6) / norm;
      at::Tensor flat = optimizer.parameters();
      flat.copy_(anchor + update * scale);
    }
  }
  out.update = to_parameter_set(trainable);
  save_optimizer(optimizer, task);
  if (sample_privacy_) {
    sample_privacy_->record(local_steps);
    out.report.privacy_epsilon = sample_privacy_->epsilon();
  }
  const double n = std::max(1, local_steps);
  out.report.samples = static_cast<uint64_t>(local_steps) * static_cast<uint64_t>(spec_.training.batch_size);
  out.report.steps = static_cast<uint32_t>(local_steps);
  out.report.loss = loss_sum / n;
  out.report.policy_loss = policy_sum / n;
  out.report.proximal_loss = prox_sum / n;
  out.report.grad_norm = grad_sum / n;
  out.report.update_norm = std::sqrt(update_sq);  // before any clipping: adaptive clipping counts it
  out.report.learning_rate = lr;
  out.report.data_seconds = data_seconds;
  out.report.train_seconds = std::chrono::duration<double>(Clock::now() - slot_start).count();
  out.slot_wait_seconds = std::chrono::duration<double>(slot_start - start).count();
  return out;
}

}  // namespace zk0
