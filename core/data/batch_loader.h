#pragma once
// Builds batches on worker threads ahead of the trainer: each worker takes the next batch's
// indices in order, reads and decodes its samples and collates them; the trainer receives the
// batches in the order their indices were drawn, so training is reproducible whatever the
// threads' timing. At most `prefetch` batches wait at any time, which bounds memory.
#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "core/data/dataset.h"

namespace zk0 {

class BatchLoader {
 public:
  // Threads for a machine: half its cores (the rest compute), at most 8, at least 1.
  static int default_workers();

  // next_indices is called once per batch, in order, under the loader's lock.
  BatchLoader(Dataset& dataset, std::function<std::vector<int64_t>()> next_indices, int64_t batches, int workers,
              int prefetch);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The next batch (normalised with the dataset's statistics); rethrows a worker's error.
  Batch next();

 private:
  void work();

  Dataset& dataset_;
  std::function<std::vector<int64_t>()> next_indices_;
  const int64_t batches_;
  const int prefetch_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  int64_t issued_ = 0, consumed_ = 0;
  std::map<int64_t, Batch> done_;
  std::map<int64_t, std::exception_ptr> failed_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace zk0
