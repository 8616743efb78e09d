// Norm bounding (Sun et al. 2019, "Can you really backdoor federated learning?"): a delta longer
// than the clip norm is scaled to it, so no update moves the global by more than any honest
// one could. It composes with every rule; the rule then sees the scaled deltas.
#include <algorithm>
#include <cmath>
#include <optional>

#include "core/aggregation/rules.h"

namespace zk0 {

std::optional<double> clip_norm(const ClippingSpec& spec, std::vector<double> norms) {
  if (spec.norm > 0) return spec.norm;
  if (!(spec.quantile > 0) || norms.empty()) return std::nullopt;
  // Nearest rank: the smallest norm with at least quantile * n norms at or below it, so the
  // quantile 1 clips nothing and 0.5 of five clips the two longest.
  std::sort(norms.begin(), norms.end());
  const size_t rank = static_cast<size_t>(std::ceil(spec.quantile * static_cast<double>(norms.size()) - 1e-9));
  return norms[std::clamp<size_t>(rank, 1, norms.size()) - 1];
}

std::vector<double> clip_scales(const std::vector<double>& norms, std::optional<double> clip) {
  std::vector<double> scales(norms.size(), 1.0);
  if (!clip) return scales;
  for (size_t i = 0; i < norms.size(); ++i)
    if (norms[i] > *clip) scales[i] = *clip / norms[i];
  return scales;
}

}  // namespace zk0
