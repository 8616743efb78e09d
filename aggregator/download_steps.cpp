#include "aggregator/download_steps.h"

#include "core/aggregation/parallel.h"
#include "core/codec/update_delta.h"
#include "core/transport/parameter_stream.h"

namespace zk0 {

DownloadSteps::DownloadSteps(CodecSettings codec, bool error_feedback, uint64_t chunk_bytes)
    : codec_(std::move(codec)), chunk_bytes_(chunk_bytes) {
  if (error_feedback) feedback_ = std::make_unique<ErrorFeedback>("", codec_);
}

ParameterSet DownloadSteps::advance(const GlobalModel& from, const ParameterSet& proposed, int round) {
  const int threads = aggregation_threads();
  EncodedUpdate step = encode_trained_update(proposed, from.parameters, codec_, feedback_.get(), threads);
  ParameterSet reached = combine(from.parameters, step.decoded, 1.0f, threads);
  if (feedback_) feedback_->keep(step.compensated, step.decoded);
  auto encoded = std::make_shared<GlobalModel>();
  encoded->round = round;
  encoded->manifest = std::move(step.manifest);
  encoded->chunk_checksums = chunk_checksums(step.encoded, chunk_bytes_);
  encoded->parameters = std::move(step.encoded);
  std::lock_guard<std::mutex> lock(mu_);
  steps_.push_back({from.manifest.digest_hex(), std::move(encoded)});
  // A chain is worth walking while it costs less than the whole global.
  uint64_t chain_bytes = 0;
  size_t keep = 0;
  for (auto it = steps_.rbegin(); it != steps_.rend() && keep < kMaxDownloadSteps; ++it, ++keep) {
    chain_bytes += it->encoded->manifest.total_bytes();
    if (chain_bytes >= from.manifest.total_bytes()) break;
  }
  while (steps_.size() > keep) steps_.pop_front();
  return reached;
}

std::shared_ptr<const GlobalModel> DownloadSteps::step_from(const std::string& held) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Step& s : steps_)
    if (s.from_digest == held) return s.encoded;
  return nullptr;
}

const ParameterSet& DownloadSteps::residual() const {
  static const ParameterSet none;
  return feedback_ ? feedback_->residual() : none;
}

void DownloadSteps::restore(ParameterSet residual) {
  if (feedback_) feedback_->restore(std::move(residual));
}

}  // namespace zk0
