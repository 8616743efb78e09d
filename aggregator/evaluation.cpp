#include "aggregator/evaluation.h"

#include "core/data/batch_loader.h"
#include "core/data/open_dataset.h"

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
  size_t issued = 0;
  const int workers = BatchLoader::default_workers();
  BatchLoader loader(*dataset_, [&] { return batches_[issued++]; }, static_cast<int64_t>(batches_.size()), workers, 2 * workers);
  for (size_t b = 0; b < batches_.size(); ++b) {
    const Batch batch = loader.next().to(device);
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
