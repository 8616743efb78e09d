#pragma once
// Downloads under transport.compression. Each round's global moves from the last one by an
// encoded step: the server step's delta (plus what earlier encodings dropped, with error
// feedback) goes through the run's codec, and the new global is the old one plus what that
// encoding decodes to. A worker holding the previous global therefore rebuilds the new one bit
// for bit from the encoded step (the same decode and the same float32 additions), and checks the
// manifest digest of what it rebuilt against the round's instruction. The recent steps are kept,
// so a worker a few rounds behind walks the chain; one further behind, or new, downloads the
// whole global. The residual is the aggregator's state and is checkpointed with the round.
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "aggregator/global_model.h"
#include "core/codec/error_feedback.h"
#include "core/codec/update_codec.h"

namespace zk0 {

class DownloadSteps {
 public:
  DownloadSteps(CodecSettings codec, bool error_feedback, uint64_t chunk_bytes);

  // The global that follows `from` for a strategy that proposed `proposed`: from + the decoded
  // step. Keeps the encoded step, reachable from from's digest, for `round`'s downloads.
  ParameterSet advance(const GlobalModel& from, const ParameterSet& proposed, int round);
  // The encoded step from the global with manifest digest `held`; null when it is not kept.
  std::shared_ptr<const GlobalModel> step_from(const std::string& held) const;

  const ParameterSet& residual() const;
  void restore(ParameterSet residual);

 private:
  CodecSettings codec_;
  uint64_t chunk_bytes_;
  std::unique_ptr<ErrorFeedback> feedback_;  // null without error feedback
  struct Step {
    std::string from_digest;
    std::shared_ptr<const GlobalModel> encoded;
  };
  mutable std::mutex mu_;  // steps_: advanced by the round loop, read by downloads
  std::deque<Step> steps_;  // oldest first
};

}  // namespace zk0
