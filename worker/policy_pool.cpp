#include "worker/policy_pool.h"

#include <torch/torch.h>

#include <chrono>

namespace zk0 {

at::Device training_device(const FederationSpec& spec, const ClientSpec& client) {
  if (client.resources.gpu == 0) return at::kCPU;
  if (!torch::cuda::is_available()) {
    size_t index = 0;
    while (index < spec.clients.size() && spec.clients[index].name != client.name) ++index;
    throw SpecError({"spec.clients[" + std::to_string(index) + "].resources.gpu: " + std::to_string(client.resources.gpu) +
                     " GPU requested but CUDA is not available on this machine"});
  }
  return at::Device(at::kCUDA, 0);
}

PolicyPool::PolicyPool(const FederationSpec& spec, const at::Device& device, int slots) : device_(device) {
  if (slots < 1) throw std::invalid_argument("PolicyPool: at least one slot");
  const auto& t = spec.training;
  for (int i = 0; i < slots; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->policy = make_policy(spec.policy);
    if (i == 0) {
      // Before moving: on CUDA a policy may keep its frozen part in bfloat16, and the digest must
      // name the weights as the spec gives them, as the aggregator computes it on its CPU.
      frozen_digest_ = build_manifest(to_parameter_set(slot->policy->frozen_parameters())).digest_hex();
    }
    slot->policy->to(device_);
    if (i == 0) layout_ = build_manifest(to_parameter_set(slot->policy->trainable_parameters()));
    else slot->policy->share_frozen(*slots_.front()->policy);
    std::vector<at::Tensor> params;
    for (auto& [name, tensor] : slot->policy->trainable_parameters()) params.push_back(tensor);
    slot->optimizer = std::make_unique<FlatAdamW>(params, AdamWOptions{t.betas[0], t.betas[1], t.eps, t.weight_decay});
    free_.push_back(slot.get());
    slots_.push_back(std::move(slot));
  }
}

PolicyPool::Lease PolicyPool::acquire(const std::function<void()>& waiting) {
  std::unique_lock<std::mutex> lock(mu_);
  while (!freed_.wait_for(lock, std::chrono::seconds(1), [this] { return !free_.empty(); })) {
    lock.unlock();
    waiting();
    lock.lock();
  }
  Slot* slot = free_.back();
  free_.pop_back();
  return Lease(*this, *slot);
}

void PolicyPool::give_back(Slot* slot) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(slot);
  }
  freed_.notify_one();
}

}  // namespace zk0
