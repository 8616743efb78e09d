#include "worker/sample_privacy.h"

#include <ATen/Parallel.h>

#include <filesystem>
#include <fstream>

#include "core/util/fs.h"
#include "core/util/log.h"

namespace zk0 {

namespace {

uint64_t stream_of(int round, int step) { return static_cast<uint64_t>(round) * (uint64_t{1} << 24) + static_cast<uint64_t>(step); }
enum Draw : uint32_t { kNoise = 0, kCoins = 1 };

}  // namespace

SampleLevelPrivacy::SampleLevelPrivacy(const FederationSpec& spec, int64_t frames, const std::string& state_dir, const std::string& client)
    : spec_(spec.training.privacy),
      frames_(frames),
      batch_size_(spec.training.batch_size),
      q_(static_cast<double>(spec.training.batch_size) / static_cast<double>(frames)),
      z_(spec.training.privacy.noise_multiplier),
      noise_(spec.training.privacy.insecure_noise_seed ? GaussianNoise::from_seed(*spec.training.privacy.insecure_noise_seed)
                                                       : GaussianNoise::from_os()) {
  const std::string who = "client '" + client + "': ";
  if (state_dir.empty())
    throw SpecError({"spec.training.privacy: " + who + "needs the worker's state directory (zk0-worker --state-dir) to keep its accountant"});
  if (batch_size_ > frames_)
    throw SpecError({"spec.training.batchSize: " + who + std::to_string(batch_size_) + " is above the dataset's " + std::to_string(frames_) +
                     " frames, so the sampling rate batchSize / frames would exceed 1"});
  if (spec_.delta >= 1.0 / static_cast<double>(frames_))
    throw SpecError({"spec.training.privacy.delta: " + who + "must be below 1 / frames = " + std::to_string(1.0 / static_cast<double>(frames_))});
  if (!(z_ > 0)) {
    try {
      z_ = noise_multiplier_for(spec_.target_epsilon, spec_.delta, q_, static_cast<long>(spec.training.local_steps) * spec.rounds);
    } catch (const std::invalid_argument& e) {
      throw SpecError({"spec.training.privacy.targetEpsilon: " + who + e.what()});
    }
  }
  state_file_ = (std::filesystem::path(state_dir) / "privacy_accountant.json").string();
  if (std::filesystem::exists(state_file_)) {
    const nlohmann::json saved = nlohmann::json::parse(read_file(state_file_));
    accountant_.restore(saved.at("accountant"));
    z_ = saved.at("noise_multiplier").get<double>();  // the run's z, whatever `rounds` says now
  }
  if (spec_.insecure_noise_seed)
    log_warn("privacy_noise_seeded", {kv("detail", "training.privacy.insecureNoiseSeed makes the noise reproducible: for tests only")});
  log_info("sample_privacy", {kv("sampling_rate", q_), kv("noise_multiplier", z_), kv("clip_norm", spec_.clip_norm),
                              kv("epsilon_so_far", epsilon()), kv("steps_so_far", accountant_.releases())});
}

std::vector<int64_t> SampleLevelPrivacy::sample(int round, int step) const {
  std::vector<double> coins(static_cast<size_t>(frames_));
  noise_.uniforms(coins.data(), coins.size(), stream_of(round, step), kCoins);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < frames_; ++i)
    if (coins[static_cast<size_t>(i)] < q_) out.push_back(i);
  return out;
}

void SampleLevelPrivacy::add_noise(at::Tensor& gradient_sum, int round, int step) const {
  at::Tensor noise = at::zeros({gradient_sum.numel()}, at::kFloat);
  noise_.add(noise.data_ptr<float>(), static_cast<size_t>(noise.numel()), z_ * spec_.clip_norm, stream_of(round, step), kNoise,
             std::max(1, static_cast<int>(at::get_num_threads())));
  gradient_sum.add_(noise.to(gradient_sum.device()).view_as(gradient_sum));
}

std::string SampleLevelPrivacy::budget_exhausted(int steps) const {
  if (!(spec_.target_epsilon > 0)) return "";
  const double next = accountant_.spent_after(q_, z_, steps, spec_.delta).epsilon;
  if (next <= spec_.target_epsilon * (1 + 1e-9)) return "";
  return "privacy budget spent: another round would take this client's epsilon from " + std::to_string(epsilon()) + " to " +
         std::to_string(next) + ", above training.privacy.targetEpsilon " + std::to_string(spec_.target_epsilon);
}

PrivateGradient private_gradient(FlatAdamW& optimizer, const Batch& batch, const SampleLevelPrivacy& privacy,
                                 const std::function<at::Tensor(const Batch&)>& loss_of, int round, int step) {
  PrivateGradient out;
  at::Tensor sum = at::zeros_like(optimizer.gradients());
  out.samples = batch.size();
  for (int64_t i = 0; i < out.samples; ++i) {
    optimizer.zero_grad();
    const at::Tensor loss = loss_of(batch.slice(i, i + 1));
    loss.backward();
    const double norm = optimizer.grad_norm();
    if (!std::isfinite(norm))
      throw std::runtime_error("training diverged: a sample's gradient is not finite at local step " + std::to_string(step));
    sum.add_(optimizer.gradients(), norm > privacy.clip_norm() ? privacy.clip_norm() / norm : 1.0);
    out.mean_loss += loss.item<double>();
    out.mean_sample_norm += norm;
  }
  if (out.samples > 0) {
    out.mean_loss /= static_cast<double>(out.samples);
    out.mean_sample_norm /= static_cast<double>(out.samples);
  }
  privacy.add_noise(sum, round, step);
  sum.div_(static_cast<double>(privacy.batch_size()));
  optimizer.gradients().copy_(sum);
  return out;
}

void SampleLevelPrivacy::record(int steps) {
  accountant_.record(q_, z_, steps);
  write_file_atomic(state_file_, nlohmann::json{{"noise_multiplier", z_}, {"accountant", accountant_.state()}}.dump());
}

}  // namespace zk0
