#pragma once
// Flow matching as SmolVLA trains it (see shared/reference/smolvla.md §3.6):
//   t ~ Beta(1.5, 1) * 0.999 + 0.001,  x_t = t * noise + (1 - t) * action,  u = noise - action,
//   loss = mean over real (non-padded) steps and action dims of (u - v)^2.
#include <ATen/ATen.h>

namespace zk0 {

struct FlowMatchingDraw {
  at::Tensor noise;  // [B, chunk, dim]
  at::Tensor time;   // [B]
  at::Tensor x_t;    // [B, chunk, dim]
  at::Tensor target;  // u = noise - action
};

FlowMatchingDraw draw_flow_matching(const at::Tensor& action, at::Generator generator);
// The same for given noise and time (debugging, parity with another implementation).
FlowMatchingDraw flow_matching_at(const at::Tensor& action, const at::Tensor& noise, const at::Tensor& time);

enum class LossReduction {
  Masked,    // LeRobot since Sep 2025: padded steps excluded, real action dims only
  Unmasked,  // the reduction that trained smolvla_base: mean over everything
};

at::Tensor flow_matching_loss(const at::Tensor& velocity, const at::Tensor& target, const at::Tensor& action_is_pad,
                              LossReduction reduction);

// Sinusoidal embedding of t in [0, 1] with periods from min_period to max_period (SmolVLA uses
// 4e-3 and 4.0): [B] -> [B, dim], sin half then cos half.
at::Tensor sinusoidal_time_embedding(const at::Tensor& time, int64_t dim, double min_period = 4e-3,
                                     double max_period = 4.0);

}  // namespace zk0
