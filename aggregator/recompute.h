#pragma once
// `zk0 ledger verify --recompute`: each round of a run that kept its updates
// (spec.checkpoints.keepUpdates) aggregated again from the kept files with the aggregator's own
// code (the spec's strategy, its server step and, under a codec, the download step), and the
// result's manifest digest compared with the global the ledger records. The mean's fixed-point
// sums and the robust rules' order-free selections make the result independent of the order in
// which updates arrived, so the recomputation reproduces the round bit for bit. Each kept update
// must be the one its worker signed (its manifest digest is the claims'), each base the global
// the ledger recorded before it, and the rule's discards the ledger's.
#include <string>
#include <vector>

#include "core/codec/update_codec.h"
#include "core/tensor/parameter_set.h"

namespace zk0 {

// An upload kept under <outputDir>/updates/ (aggregator/checkpoint.h) as the parameters it stands
// for: decoded onto `base` when it was encoded (`codec`: the run's). `update_digest`, when given,
// receives the manifest digest the upload travelled under, which its worker signed.
ParameterSet read_kept_update(const std::string& path, const ParameterSet& base, const CodecSettings& codec, std::string* update_digest);

struct RecomputeReport {
  std::vector<std::string> problems;
  int rounds = 0;  // rounds recomputed to the recorded global
};

// `ledger_text`: the ledger's bytes (already verified by verify_ledger).
RecomputeReport recompute_rounds(const std::string& output_dir, const std::string& ledger_text);

}  // namespace zk0
