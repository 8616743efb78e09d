#include "aggregator/evaluation.h"

#include "core/data/batch_loader.h"
#include "core/data/open_dataset.h"

#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>

namespace zk0 {

ServerEvaluator::ServerEvaluator(const EvaluationSetSpec& spec, const Policy& policy)
    : spec_(spec), dataset_(open_dataset(spec.dataset, policy.chunk_size(), policy.uses_images())) {
  batches_ = evaluation_batches(*dataset_, spec.mode, spec.batches, spec.batch_size, spec.seed);
}

void ServerEvaluator::for_each_batch(Policy& policy, const std::function<void(const Batch&, at::Generator)>& f) {
  policy.set_training(false);
  const at::Device device = policy.device();
  size_t issued = 0;
  const int workers = BatchLoader::default_workers();
  BatchLoader loader(*dataset_, [&] { return batches_[issued++]; }, static_cast<int64_t>(batches_.size()), workers, 2 * workers);
  for (size_t b = 0; b < batches_.size(); ++b) f(loader.next().to(device), at::make_generator<at::CPUGeneratorImpl>(mix_seed(spec_.seed, b)));
}

EvalResult ServerEvaluator::evaluate(Policy& policy) {
  const auto start = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  EvalResult r;
  double weighted = 0;
  for_each_batch(policy, [&](const Batch& batch, at::Generator gen) {
    weighted += policy.loss(batch, gen).item<double>() * static_cast<double>(batch.size());
    r.samples += batch.size();
    ++r.batches;
  });
  r.loss = weighted / static_cast<double>(r.samples);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

ParameterSet ServerEvaluator::loss_gradient(Policy& policy) {
  at::AutoGradMode grad(true);
  NamedTensors params = policy.trainable_parameters();
  std::vector<bool> required;
  for (auto& [name, t] : params) {
    required.push_back(t.requires_grad());
    t.requires_grad_(true);
    t.mutable_grad() = at::Tensor();
  }
  int64_t samples = 0;
  for (const auto& b : batches_) samples += static_cast<int64_t>(b.size());
  for_each_batch(policy, [&](const Batch& batch, at::Generator gen) {
    // evaluate()'s sample-weighted mean, so that this is its gradient.
    (policy.loss(batch, gen) * (static_cast<double>(batch.size()) / static_cast<double>(samples))).backward();
  });
  NamedTensors grads;
  for (size_t i = 0; i < params.size(); ++i) {
    auto& [name, t] = params[i];
    grads.emplace_back(name, t.grad().defined() ? t.grad().detach() : at::zeros_like(t));
    t.mutable_grad() = at::Tensor();
    t.requires_grad_(required[i]);
  }
  return to_parameter_set(grads);
}

EvaluationSets::EvaluationSets(const EvaluationSpec& spec, const Policy& policy) {
  for (const auto& set : spec.sets) {
    names_.push_back(set.name);
    evaluators_.push_back(std::make_unique<ServerEvaluator>(set, policy));
  }
}

std::vector<SetResult> EvaluationSets::evaluate(Policy& policy) {
  std::vector<SetResult> results;
  for (size_t i = 0; i < evaluators_.size(); ++i) results.push_back({names_[i], evaluators_[i]->evaluate(policy)});
  return results;
}

std::vector<ParameterSet> EvaluationSets::loss_gradients(Policy& policy) {
  std::vector<ParameterSet> gradients;
  for (auto& e : evaluators_) gradients.push_back(e->loss_gradient(policy));
  return gradients;
}

}  // namespace zk0
