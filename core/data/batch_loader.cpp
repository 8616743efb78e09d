#include "core/data/batch_loader.h"

#include <algorithm>

namespace zk0 {

int BatchLoader::default_workers() {
  return std::clamp(static_cast<int>(std::thread::hardware_concurrency()) / 2, 1, 8);
}

BatchLoader::BatchLoader(Dataset& dataset, std::function<std::vector<int64_t>()> next_indices, int64_t batches, int workers,
                         int prefetch)
    : dataset_(dataset), next_indices_(std::move(next_indices)), batches_(batches), prefetch_(std::max(1, prefetch)) {
  for (int i = 0; i < std::max(1, workers); ++i) workers_.emplace_back([this] { work(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  space_.notify_all();
  ready_.notify_all();
  for (auto& w : workers_) w.join();
}

void BatchLoader::work() {
  for (;;) {
    int64_t k;
    std::vector<int64_t> indices;
    {
      std::unique_lock<std::mutex> lock(mu_);
      space_.wait(lock, [&] { return stop_ || issued_ >= batches_ || issued_ - consumed_ < prefetch_; });
      if (stop_ || issued_ >= batches_) return;
      k = issued_++;
      try {
        indices = next_indices_();
      } catch (...) {
        failed_[k] = std::current_exception();
        ready_.notify_all();
        continue;
      }
    }
    try {
      std::vector<Sample> samples;
      samples.reserve(indices.size());
      for (int64_t i : indices) samples.push_back(dataset_.get(i));
      // Poisson sampling (DP-SGD) can draw no sample at all: an empty batch, not an error.
      Batch batch = samples.empty() ? Batch{} : collate(samples, dataset_.state_stats(), dataset_.action_stats());
      std::lock_guard<std::mutex> lock(mu_);
      done_[k] = std::move(batch);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      failed_[k] = std::current_exception();
    }
    ready_.notify_all();
  }
}

Batch BatchLoader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  if (consumed_ >= batches_) throw std::logic_error("BatchLoader: all batches were consumed");
  const int64_t k = consumed_;
  ready_.wait(lock, [&] { return done_.count(k) || failed_.count(k); });
  if (auto f = failed_.find(k); f != failed_.end()) std::rethrow_exception(f->second);
  Batch batch = std::move(done_.at(k));
  done_.erase(k);
  ++consumed_;
  space_.notify_all();
  return batch;
}

}  // namespace zk0
