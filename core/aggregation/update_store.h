#pragma once
// A round's updates, kept as deltas from its global in files under a scratch folder, so that the
// rules needing every update at once (median, trimmed mean, Krum, Bulyan, norm bounding at a
// quantile) run in memory bounded by one block per update, whatever the client count: 16
// updates of 100M float32 parameters are 6.4 GB on disk and a few hundred MB in memory.
//
// Read with pread into the caller's buffers, not mmap: mapped pages count against the process
// (and a pod's memory limit) until the kernel reclaims them, and a full disk surfaces as an
// exception naming the file instead of a SIGBUS.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/parameter_set.h"

namespace zk0 {

class UpdateStore {
 public:
  // Creates a fresh folder below `parent_dir` (created if missing). `global` must outlive the store.
  UpdateStore(const std::string& parent_dir, const ParameterSet& global);
  ~UpdateStore();  // removes its folder and everything in it
  UpdateStore(const UpdateStore&) = delete;
  UpdateStore& operator=(const UpdateStore&) = delete;

  // Writes update - global (same layout; not checked here) as float32, one file per update.
  // Returns its row and, through `norm`, the delta's L2 norm.
  size_t put(const ParameterSet& update, double& norm);
  size_t rows() const { return fds_.size(); }
  int64_t elements() const { return elements_; }  // coordinates per row, over every tensor in order
  const std::string& dir() const { return dir_; }

  // Coordinates [begin, begin + count) of row `row`, flattened over the tensors in order.
  void read(size_t row, int64_t begin, int64_t count, float* out) const;

 private:
  const ParameterSet& global_;
  std::string dir_;
  int64_t elements_ = 0;
  std::vector<int> fds_;
};

}  // namespace zk0
