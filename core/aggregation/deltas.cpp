#include "core/aggregation/deltas.h"

#include <cmath>
#include <stdexcept>

namespace zk0 {

double distance_from(const ParameterSet& update, const ParameterSet& global, std::string& bad) {
  double sum = 0;
  for (size_t i = 0; i < update.tensors.size(); ++i) {
    const float* x = update.tensors[i].as<float>();
    const float* g = global.tensors[i].as<float>();
    double tensor_sum = 0;
    bool finite = true;
    for (int64_t k = 0, n = update.tensors[i].numel(); k < n; ++k) {
      finite &= std::isfinite(x[k]);
      const double d = static_cast<double>(x[k]) - g[k];
      tensor_sum += d * d;
    }
    if (!finite) {
      bad = update.tensors[i].name;
      return NAN;
    }
    sum += tensor_sum;
  }
  return std::sqrt(sum);
}

double dot_with_delta(const ParameterSet& direction, const ParameterSet& update, const ParameterSet& global) {
  double sum = 0;
  for (size_t i = 0; i < update.tensors.size(); ++i) {
    const float* v = direction.tensors[i].as<float>();
    const float* x = update.tensors[i].as<float>();
    const float* g = global.tensors[i].as<float>();
    double tensor_sum = 0;
    for (int64_t k = 0, n = update.tensors[i].numel(); k < n; ++k)
      tensor_sum += static_cast<double>(v[k]) * (static_cast<double>(x[k]) - static_cast<double>(g[k]));
    sum += tensor_sum;
  }
  return sum;
}

ParameterSet mean_without(const ParameterSet& mean, double total_weight, const ParameterSet& global, const ParameterSet& update,
                          double weight, double scale) {
  if (!(total_weight > weight)) throw std::invalid_argument("mean_without: the mean's total weight must exceed the update's");
  ParameterSet out = mean;
  const double rest = total_weight - weight;
  for (size_t i = 0; i < out.tensors.size(); ++i) {
    float* a = out.tensors[i].as<float>();
    const float* x = update.tensors[i].as<float>();
    const float* g = global.tensors[i].as<float>();
    for (int64_t k = 0, n = out.tensors[i].numel(); k < n; ++k) {
      const double folded = static_cast<double>(g[k]) + scale * (static_cast<double>(x[k]) - static_cast<double>(g[k]));
      a[k] = static_cast<float>((total_weight * static_cast<double>(a[k]) - weight * folded) / rest);
    }
  }
  return out;
}

bool all_finite(const ParameterSet& p, std::string& bad) {
  for (const auto& t : p.tensors) {
    const float* x = t.as<float>();
    bool finite = true;
    for (int64_t k = 0, n = t.numel(); k < n; ++k) finite &= std::isfinite(x[k]);
    if (!finite) {
      bad = t.name;
      return false;
    }
  }
  return true;
}

UpdateCheck check_update(const ParameterSet& update, const ParameterSet& global, double max_update_norm) {
  UpdateCheck c;
  std::string bad;
  c.norm = distance_from(update, global, bad);
  if (!bad.empty()) {
    c.reason = "non_finite";
    c.message = "tensor '" + bad + "' holds NaN or infinity";
  } else if (!(c.norm <= max_update_norm)) {
    c.reason = "update_norm";
    c.message = "update is " + std::to_string(c.norm) + " from the global parameters, more than spec.strategy.maxUpdateNorm (" +
                std::to_string(max_update_norm) + ")";
  }
  return c;
}

void check_same_layout(const ParameterSet& update, const ParameterSet& global, const std::string& who) {
  if (update.tensors.size() != global.tensors.size())
    throw std::invalid_argument(who + ": update has " + std::to_string(update.tensors.size()) + " tensors, the global " +
                                std::to_string(global.tensors.size()));
  for (size_t i = 0; i < global.tensors.size(); ++i) {
    const Tensor& g = global.tensors[i];
    const Tensor& x = update.tensors[i];
    if (x.name != g.name || x.shape != g.shape || x.dtype != DType::F32 || g.dtype != DType::F32)
      throw std::invalid_argument(who + ": tensor '" + x.name + "' does not match '" + g.name + "' " + shape_string(g.shape) +
                                  " F32");
  }
}

}  // namespace zk0
