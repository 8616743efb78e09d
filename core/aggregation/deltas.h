#pragma once
// Updates as deltas from the round's global: the checks every rule and the coordinator share.
#include <string>

#include "core/tensor/parameter_set.h"

namespace zk0 {

// L2 distance of `update` from `global` (same layout), in double, one pass. When the update holds
// a NaN or an infinity, `bad` names the tensor and the result is NaN.
double distance_from(const ParameterSet& update, const ParameterSet& global, std::string& bad);

// False, with `bad` naming the tensor, when a parameter is NaN or infinite.
bool all_finite(const ParameterSet& p, std::string& bad);

// Throws std::invalid_argument, prefixed with `who`, unless `update` has the layout of `global`
// (the same F32 tensors, names and shapes, in the same order).
void check_same_layout(const ParameterSet& update, const ParameterSet& global, const std::string& who);

}  // namespace zk0
