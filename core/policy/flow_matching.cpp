#include "core/policy/flow_matching.h"

#include <cmath>

namespace zk0 {

FlowMatchingDraw draw_flow_matching(const at::Tensor& action, at::Generator generator) {
  FlowMatchingDraw d;
  // Drawn on the CPU from the CPU generator, so a seed gives the same draw on any device.
  const auto cpu = at::TensorOptions().dtype(at::kFloat);
  d.noise = at::normal(0.0, 1.0, action.sizes(), generator, cpu).to(action.device());
  // Beta(a, 1) by inversion: its CDF is x^a, so U^(1/a) has that law.
  const at::Tensor u = at::empty({action.size(0)}, cpu).uniform_(0.0, 1.0, generator).to(action.device());
  return flow_matching_at(action, d.noise, u.pow(1.0 / 1.5) * 0.999 + 0.001);
}

FlowMatchingDraw flow_matching_at(const at::Tensor& action, const at::Tensor& noise, const at::Tensor& time) {
  FlowMatchingDraw d;
  d.noise = noise;
  d.time = time;
  const at::Tensor t = time.view({-1, 1, 1});
  d.x_t = t * noise + (1 - t) * action;
  d.target = noise - action;
  return d;
}

at::Tensor flow_matching_loss(const at::Tensor& velocity, const at::Tensor& target, const at::Tensor& action_is_pad,
                              LossReduction reduction) {
  const at::Tensor losses = (target - velocity.to(at::kFloat)).pow(2);
  if (reduction == LossReduction::Unmasked || !action_is_pad.defined()) return losses.mean();
  const at::Tensor keep = action_is_pad.logical_not().unsqueeze(-1).to(losses.dtype());
  const at::Tensor count = (keep.sum() * losses.size(-1)).clamp_min(1);
  return (losses * keep).sum() / count;
}

at::Tensor sinusoidal_time_embedding(const at::Tensor& time, int64_t dim, double min_period, double max_period) {
  const auto opts = time.options().dtype(at::kDouble);
  const at::Tensor fraction = at::linspace(0.0, 1.0, dim / 2, opts);
  const at::Tensor period = min_period * at::pow(max_period / min_period, fraction);
  const at::Tensor scaling = 1.0 / period * 2 * M_PI;
  const at::Tensor angle = scaling.unsqueeze(0) * time.to(at::kDouble).unsqueeze(1);
  return at::cat({at::sin(angle), at::cos(angle)}, 1).to(at::kFloat);
}

}  // namespace zk0
