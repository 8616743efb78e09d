#pragma once
// AdamW with decoupled weight decay, as torch.optim.AdamW, over one flat buffer that holds every
// trainable parameter, with their gradients in a second flat buffer. A step is a handful of
// whole-buffer operations instead of about ten per tensor: at SmolVLA's ~100M trainable
// parameters in ~170 tensors that is one pass (CPU) or ten kernels (CUDA) instead of ~1,700.
// The FedProx pull and gradient clipping work on the same buffers.
#include <ATen/ATen.h>

#include <vector>

namespace zk0 {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

class FlatAdamW {
 public:
  // The parameters (float32, one device) become views of the flat buffer and keep their values;
  // their .grad become views of the gradient buffer, into which backward() accumulates.
  FlatAdamW(const std::vector<at::Tensor>& params, AdamWOptions options);

  const at::Tensor& parameters() const { return flat_; }

  void zero_grad() { grad_.zero_(); }
  // The flat gradient buffer (DP-SGD sums clipped per-sample gradients beside it and writes the
  // noisy mean back into it).
  const at::Tensor& gradients() const { return grad_; }
  // FedProx: adds the gradient of mu/2 * ||w - anchor||^2 and returns the term's value.
  double add_proximal_gradient(const at::Tensor& anchor, double mu);
  // The gradients' L2 norm.
  double grad_norm() const;
  // One AdamW step at learning rate `lr` on the gradients times `grad_scale` (clipping). The
  // gradient buffer is left unspecified until zero_grad().
  void step(double lr, double grad_scale = 1.0);

  // The optimizer's own state: first and second moments (flat, on the CPU) and the step count
  // their bias corrections use.
  struct State {
    at::Tensor exp_avg, exp_avg_sq;
    int64_t steps = 0;
  };
  void reset();  // zero moments, step 0: a fresh torch.optim.AdamW
  State state() const;
  // Throws std::invalid_argument when the state's size is not this optimizer's.
  void load_state(const State& state);

 private:
  AdamWOptions options_;
  at::Tensor flat_, grad_, exp_avg_, exp_avg_sq_;
  int64_t steps_ = 0;
};

// The scale that brings a gradient of norm `norm` within `max_norm`, as
// torch.nn.utils.clip_grad_norm_ computes it (max_norm <= 0: no clipping).
double clip_scale(double norm, double max_norm);

}  // namespace zk0
