#include "core/optim/flat_adamw.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <stdexcept>

namespace zk0 {

namespace {

struct AdamWStep {
  float grad_scale, decay, beta1, beta2, one_minus_beta1, one_minus_beta2, step_size, bias_correction2_sqrt, eps;
};

// One pass over [begin, end) of the four buffers. Cloned for AVX-512, AVX2 and baseline x86-64,
// picked at load time, so that the loop vectorises whatever the build's -march.
__attribute__((target_clones("avx512f", "avx2", "default"))) void adamw_span(
    float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t begin,
    int64_t end, const AdamWStep& s) {
  for (int64_t i = begin; i < end; ++i) {
    const float gi = g[i] * s.grad_scale;
    const float mi = m[i] * s.beta1 + gi * s.one_minus_beta1;
    const float vi = v[i] * s.beta2 + gi * gi * s.one_minus_beta2;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * s.decay - s.step_size * mi / (std::sqrt(vi) / s.bias_correction2_sqrt + s.eps);
  }
}

}  // namespace

FlatAdamW::FlatAdamW(const std::vector<at::Tensor>& params, AdamWOptions options) : options_(options) {
  if (params.empty()) throw std::invalid_argument("FlatAdamW: no parameters");
  int64_t total = 0;
  for (const auto& p : params) {
    if (p.scalar_type() != at::kFloat) throw std::invalid_argument("FlatAdamW: trainable parameters must be float32");
    if (p.device() != params.front().device()) throw std::invalid_argument("FlatAdamW: parameters on several devices");
    total += p.numel();
  }
  const auto opts = params.front().options();
  flat_ = at::empty({total}, opts);
  grad_ = at::zeros({total}, opts);
  exp_avg_ = at::zeros({total}, opts);
  exp_avg_sq_ = at::zeros({total}, opts);
  at::NoGradGuard no_grad;
  int64_t offset = 0;
  for (const auto& p : params) {
    const int64_t n = p.numel();
    at::Tensor slot = flat_.narrow(0, offset, n);
    slot.copy_(p.reshape({n}));
    // Re-point the parameter's storage at its slot: every handle to it (the policy's, the
    // caller's) sees the move, and autograd keeps it as the same leaf.
    at::Tensor(p).set_(slot.view(p.sizes()));
    at::Tensor(p).mutable_grad() = grad_.narrow(0, offset, n).view(p.sizes());
    offset += n;
  }
}

double FlatAdamW::add_proximal_gradient(const at::Tensor& anchor, double mu) {
  at::NoGradGuard no_grad;
  const at::Tensor diff = flat_ - anchor;
  grad_.add_(diff, mu);
  return mu / 2 * diff.dot(diff).item<double>();
}

void FlatAdamW::reset() {
  exp_avg_.zero_();
  exp_avg_sq_.zero_();
  steps_ = 0;
}

FlatAdamW::State FlatAdamW::state() const {
  return {exp_avg_.to(at::kCPU).clone(), exp_avg_sq_.to(at::kCPU).clone(), steps_};
}

void FlatAdamW::load_state(const State& state) {
  if (!state.exp_avg.defined() || !state.exp_avg_sq.defined() || state.exp_avg.numel() != exp_avg_.numel() ||
      state.exp_avg_sq.numel() != exp_avg_sq_.numel() || state.steps < 0)
    throw std::invalid_argument("FlatAdamW: the state is for " + std::to_string(state.exp_avg.defined() ? state.exp_avg.numel() : 0) +
                                " parameters, this optimizer has " + std::to_string(exp_avg_.numel()));
  at::NoGradGuard no_grad;
  exp_avg_.copy_(state.exp_avg.reshape({-1}));
  exp_avg_sq_.copy_(state.exp_avg_sq.reshape({-1}));
  steps_ = state.steps;
}

double FlatAdamW::grad_norm() const { return grad_.norm().item<double>(); }

void FlatAdamW::step(double lr, double grad_scale) {
  at::NoGradGuard no_grad;
  ++steps_;
  const double b1 = options_.beta1, b2 = options_.beta2, eps = options_.eps;
  const double decay = 1 - lr * options_.weight_decay;
  const double step_size = lr / (1 - std::pow(b1, static_cast<double>(steps_)));
  const double bias_correction2_sqrt = std::sqrt(1 - std::pow(b2, static_cast<double>(steps_)));
  if (!flat_.is_cpu()) {
    if (grad_scale != 1.0) grad_.mul_(grad_scale);
    flat_.mul_(decay);
    exp_avg_.mul_(b1).add_(grad_, 1 - b1);
    exp_avg_sq_.mul_(b2).addcmul_(grad_, grad_, 1 - b2);
    flat_.addcdiv_(exp_avg_, exp_avg_sq_.sqrt().div_(bias_correction2_sqrt).add_(eps), -step_size);
    return;
  }
  // CPU: the same arithmetic in one pass over the four buffers, on every intra-op thread.
  const auto f = [](double x) { return static_cast<float>(x); };
  const AdamWStep s{f(grad_scale), f(decay), f(b1), f(b2), f(1 - b1), f(1 - b2), f(step_size), f(bias_correction2_sqrt), f(eps)};
  float* p = flat_.data_ptr<float>();
  const float* g = grad_.data_ptr<float>();
  float* m = exp_avg_.data_ptr<float>();
  float* v = exp_avg_sq_.data_ptr<float>();
  at::parallel_for(0, flat_.numel(), 1 << 15, [&](int64_t begin, int64_t end) { adamw_span(p, g, m, v, begin, end, s); });
}

double clip_scale(double norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  return std::min(1.0, max_norm / (norm + 1e-6));
}

}  // namespace zk0
