#pragma once
// Updates as deltas from the round's global: the checks every rule and the coordinator share.
#include <string>

#include "core/tensor/parameter_set.h"

namespace zk0 {

// L2 distance of `update` from `global` (same layout), in double, one pass. When the update holds
// a NaN or an infinity, `bad` names the tensor and the result is NaN.
double distance_from(const ParameterSet& update, const ParameterSet& global, std::string& bad);

// <direction, update - global> over every parameter (same layouts), in double: how far the update
// moves along `direction` (contribution scores: the evaluation loss's gradient).
double dot_with_delta(const ParameterSet& direction, const ParameterSet& update, const ParameterSet& global);

// The weighted mean of a round's updates without one of them, from the mean itself: (W x mean -
// w x c) / (W - w), where W is the mean's total weight, w the update's weight, and c the update
// as the mean folded it (global + scale x (update - global), `scale` below 1 where it was clipped).
// Exact up to rounding, in double; requires W > w. (Leave-one-out scores under the mean: one read
// of each update instead of the round again per client.)
ParameterSet mean_without(const ParameterSet& mean, double total_weight, const ParameterSet& global, const ParameterSet& update,
                          double weight, double scale);

// False, with `bad` naming the tensor, when a parameter is NaN or infinite.
bool all_finite(const ParameterSet& p, std::string& bad);

// What the aggregator checks of every update's content before a rule sees it: finite, and no
// farther than `max_update_norm` (spec.strategy.maxUpdateNorm) from the global. `reason` is
// empty when it passes, else non_finite or update_norm, with `message` saying why.
struct UpdateCheck {
  double norm = 0;
  std::string reason, message;
  bool ok() const { return reason.empty(); }
};
UpdateCheck check_update(const ParameterSet& update, const ParameterSet& global, double max_update_norm);

// Throws std::invalid_argument, prefixed with `who`, unless `update` has the layout of `global`
// (the same F32 tensors, names and shapes, in the same order).
void check_same_layout(const ParameterSet& update, const ParameterSet& global, const std::string& who);

}  // namespace zk0
