#include "aggregator/evaluation.h"

#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>

namespace zk0 {

ServerEvaluator::ServerEvaluator(const EvaluationSpec& spec, const Policy& policy)
    : spec_(spec), dataset_(open_dataset(spec.dataset, policy.chunk_size(), policy.uses_images())) {
  batches_ = evaluation_batches(*dataset_, spec.mode, spec.batches, spec.batch_size, spec.seed);
}

EvalResult ServerEvaluator::evaluate(Policy& policy) {
  const auto start = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  policy.set_training(false);
  const at::Device device = policy.device();
  EvalResult r;
  double weighted = 0;
  for (size_t b = 0; b < batches_.size(); ++b) {
    std::vector<Sample> samples;
    for (int64_t i : batches_[b]) samples.push_back(dataset_->get(i));
    const Batch batch = collate(samples, dataset_->state_stats(), dataset_->action_stats()).to(device);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(spec_.seed, b));
    const double loss = policy.loss(batch, gen).item<double>();
    weighted += loss * static_cast<double>(batch.size());
    r.samples += batch.size();
    ++r.batches;
  }
  r.loss = weighted / static_cast<double>(r.samples);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace zk0
