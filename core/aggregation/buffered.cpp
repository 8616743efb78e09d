#include "core/aggregation/buffered.h"

#include <cmath>

#include "core/aggregation/deltas.h"
#include "core/aggregation/parallel.h"

namespace zk0 {

double staleness_weight(StalenessWeight kind, int staleness) {
  return kind == StalenessWeight::Constant ? 1.0 : 1.0 / std::sqrt(1.0 + staleness);
}

ParameterSet rebase_update(ParameterSet update, const ParameterSet& base, const ParameterSet& current, double scale) {
  check_same_layout(update, current, "rebase: update");
  check_same_layout(base, current, "rebase: base global");
  if (&base == &current && scale == 1.0) return update;
  const float s = static_cast<float>(scale);
  for (size_t t = 0; t < current.tensors.size(); ++t) {
    float* u = update.tensors[t].as<float>();
    const float* b = base.tensors[t].as<float>();
    const float* g = current.tensors[t].as<float>();
    parallel_for(static_cast<size_t>(current.tensors[t].numel()), aggregation_threads(), [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) u[i] = g[i] + s * (u[i] - b[i]);
    });
  }
  return update;
}

}  // namespace zk0
