#pragma once
// What a worker reports about one round of local training, alongside its update.
#include <cstdint>
#include <optional>

namespace zk0 {

struct TrainReport {
  uint64_t samples = 0;  // samples actually trained: FedAvg's weight
  uint32_t steps = 0;
  double loss = 0;  // policy loss + proximal term, mean over steps
  double policy_loss = 0;
  double proximal_loss = 0;
  double grad_norm = 0;    // before clipping, mean over steps
  double update_norm = 0;  // ||w_local - w_global||
  double learning_rate = 0;  // at the last step
  double train_seconds = 0;
  double data_seconds = 0;
  double download_seconds = 0;
  uint64_t bytes_downloaded = 0;
  std::optional<double> privacy_epsilon;  // under training.privacy: this client's epsilon so far
};

}  // namespace zk0
