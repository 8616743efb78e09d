#pragma once
// Error feedback for lossy update codecs (Seide et al. 2014; Lin et al. 2018, Deep Gradient
// Compression): what a round's encoding dropped is added to the next round's update, so the sum
// of what the aggregator receives tracks the sum of what the worker trained, and top-k at 1%
// still converges. The residual lives on the worker's disk beside its other state and survives a
// restart; it is bound to the codec and the layout, and a residual for another one is refused
// rather than silently applied.
//
// A worker may encode from the same global twice: the aggregator lost the round (killed before its
// checkpoint) or retried it. The residual then goes back to what it was before that global's first
// encoding, so the round is encoded as it was the first time and a resumed run stays the
// uninterrupted one; the residual moves on only when the worker trains from a new global.
#include <string>

#include "core/codec/update_codec.h"
#include "core/tensor/parameter_set.h"

namespace zk0 {

class ErrorFeedback {
 public:
  // `path`: the residual's file (safetensors). Loads it when present; throws std::runtime_error
  // naming the file when it is unreadable or was written for another codec. Empty: the residual
  // lives in memory only (a worker without a state folder) and a restart starts without one.
  ErrorFeedback(std::string path, CodecSettings codec);

  // Before encoding an update trained from the global whose manifest digest is `base`: from the
  // base the last kept residual came from, the residual before it is used again.
  void begin(const std::string& base);
  // delta + residual: the update to encode this round. Throws naming the tensor when the
  // residual's layout is not the delta's.
  ParameterSet compensate(const ParameterSet& delta) const;
  // Keeps compensated − decoded (what this round's encoding dropped) and writes it durably, with
  // the residual it replaced when begin() named the base.
  void keep(const ParameterSet& compensated, const ParameterSet& decoded);

  const ParameterSet& residual() const { return residual_; }
  // A residual kept elsewhere (the aggregator's checkpoint); its layout is checked on use.
  void restore(ParameterSet residual) { residual_ = std::move(residual); }

 private:
  std::string path_;
  CodecSettings codec_;
  ParameterSet residual_;  // empty: nothing dropped yet
  std::string base_;       // begin()'s, for the next keep()
  std::string kept_base_;  // the base residual_ came from
  ParameterSet before_;    // the residual before kept_base_'s encoding
};

}  // namespace zk0
