#include "core/aggregation/server_optimizer.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/aggregation/deltas.h"
#include "core/aggregation/parallel.h"

namespace zk0 {

namespace {

Tensor zeros_like(const Tensor& t, const std::string& prefix) {
  Tensor z = make_tensor(prefix + t.name, DType::F32, t.shape);
  std::memset(z.bytes.data(), 0, z.bytes.size());
  return z;
}

bool keeps_first_moment(ServerOptimizerType t) { return t == ServerOptimizerType::AvgM || t == ServerOptimizerType::Adam || t == ServerOptimizerType::Yogi; }
bool keeps_second_moment(ServerOptimizerType t) { return t == ServerOptimizerType::Adam || t == ServerOptimizerType::Yogi || t == ServerOptimizerType::Adagrad; }

}  // namespace

ServerOptimizer::ServerOptimizer(const ServerOptimizerSpec& spec) : spec_(spec) {}

ParameterSet ServerOptimizer::step(const ParameterSet& global, ParameterSet aggregate) {
  if (spec_.type == ServerOptimizerType::None) return aggregate;
  check_same_layout(aggregate, global, "server optimizer");
  if (m_.empty() && v_.empty()) {
    // Fresh moments, or a checkpoint's put in the global's order and checked against it.
    const auto moment = [&](const Tensor& t, const std::string& prefix) {
      if (restored_.tensors.empty()) return zeros_like(t, prefix);
      const Tensor* r = restored_.find(prefix + t.name);
      if (!r || r->shape != t.shape || r->dtype != DType::F32)
        throw std::invalid_argument("server optimizer state: no F32 tensor '" + prefix + t.name + "' " + shape_string(t.shape));
      return *r;
    };
    for (const auto& t : global.tensors) {
      if (keeps_first_moment(spec_.type)) m_.push_back(moment(t, "m/"));
      if (keeps_second_moment(spec_.type)) v_.push_back(moment(t, "v/"));
    }
    const size_t expected = m_.size() + v_.size();
    if (!restored_.tensors.empty() && restored_.tensors.size() != expected)
      throw std::invalid_argument("server optimizer state: " + std::to_string(restored_.tensors.size()) + " tensors, expected " +
                                  std::to_string(expected));
    restored_ = ParameterSet();
  }
  ++steps_;
  const auto type = spec_.type;
  const float b1 = static_cast<float>(spec_.betas[0]), b2 = static_cast<float>(spec_.betas[1]);
  const float momentum = static_cast<float>(spec_.momentum), tau = static_cast<float>(spec_.tau);
  // FedAdam corrects the bias of both moments through the learning rate, as Adam does.
  double lr = spec_.learning_rate;
  if (type == ServerOptimizerType::Adam)
    lr *= std::sqrt(1 - std::pow(spec_.betas[1], steps_)) / (1 - std::pow(spec_.betas[0], steps_));
  const float eta = static_cast<float>(lr);
  for (size_t t = 0; t < global.tensors.size(); ++t) {
    const float* g = global.tensors[t].as<float>();
    float* x = aggregate.tensors[t].as<float>();  // becomes the result in place
    float* m = m_.empty() ? nullptr : m_[t].as<float>();
    float* v = v_.empty() ? nullptr : v_[t].as<float>();
    parallel_for(static_cast<size_t>(global.tensors[t].numel()), aggregation_threads(), [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) {
        const float d = x[i] - g[i];
        switch (type) {
          case ServerOptimizerType::AvgM:
            m[i] = momentum * m[i] + d;
            x[i] = g[i] + eta * m[i];
            break;
          case ServerOptimizerType::Adam:
            m[i] = b1 * m[i] + (1 - b1) * d;
            v[i] = b2 * v[i] + (1 - b2) * d * d;
            x[i] = g[i] + eta * m[i] / (std::sqrt(v[i]) + tau);
            break;
          case ServerOptimizerType::Yogi: {
            m[i] = b1 * m[i] + (1 - b1) * d;
            const float d2 = d * d;
            v[i] = v[i] - (1 - b2) * d2 * (v[i] > d2 ? 1.0f : (v[i] < d2 ? -1.0f : 0.0f));
            x[i] = g[i] + eta * m[i] / (std::sqrt(v[i]) + tau);
            break;
          }
          case ServerOptimizerType::Adagrad:
            v[i] = v[i] + d * d;
            x[i] = g[i] + eta * d / (std::sqrt(v[i]) + tau);
            break;
          case ServerOptimizerType::None: break;
        }
      }
    });
  }
  return aggregate;
}

ParameterSet ServerOptimizer::moments() const {
  ParameterSet out;
  for (const auto& t : m_) out.tensors.push_back(t);
  for (const auto& t : v_) out.tensors.push_back(t);
  return out;
}

void ServerOptimizer::restore(const nlohmann::json& state, ParameterSet moments) {
  steps_ = state.at("steps").get<int>();
  if (steps_ < 0) throw std::invalid_argument("server optimizer state: negative step count");
  if (steps_ > 0 && spec_.type != ServerOptimizerType::None && moments.tensors.empty())
    throw std::invalid_argument("server optimizer state: " + std::to_string(steps_) + " steps taken but the moments are missing");
  m_.clear();
  v_.clear();
  restored_ = std::move(moments);  // matched against the global at the next step
}

}  // namespace zk0
