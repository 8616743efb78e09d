#pragma once
// The policies local training runs on. A worker that trains one client has a pool of one; the
// simulation runtime's virtual clients share one pool, so that the frozen weights (SmolVLA's
// backbone) and what is computed from them alone (its prefix cache) exist once however many
// clients there are, and `slots` clients train at a time, each on a slot's own trainable
// parameters and optimizer. A client takes a slot for one round: it loads the round's global
// parameters and its own optimizer state into it first, so nothing of another client remains.
#include <ATen/ATen.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/optim/flat_adamw.h"
#include "core/policy/policy.h"
#include "core/tensor/manifest.h"

namespace zk0 {

class PolicyPool {
 public:
  struct Slot {
    std::unique_ptr<Policy> policy;
    std::unique_ptr<FlatAdamW> optimizer;  // its flat buffer holds the slot's trainable parameters
  };

  // A slot held for one round, given back when destroyed.
  class Lease {
   public:
    Lease(PolicyPool& pool, Slot& slot) : pool_(&pool), slot_(&slot) {}
    Lease(Lease&& other) noexcept : pool_(other.pool_), slot_(other.slot_) { other.pool_ = nullptr; }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_) pool_->give_back(slot_);
    }
    Slot& operator*() const { return *slot_; }
    Slot* operator->() const { return slot_; }

   private:
    PolicyPool* pool_;
    Slot* slot_;
  };

  PolicyPool(const FederationSpec& spec, const at::Device& device, int slots);

  // Waits for a free slot, calling `waiting` about once a second meanwhile.
  Lease acquire(const std::function<void()>& waiting = [] {});

  int slots() const { return static_cast<int>(slots_.size()); }
  const at::Device& device() const { return device_; }
  const Manifest& layout() const { return layout_; }  // the trainable parameters, as they travel
  const std::string& frozen_digest() const { return frozen_digest_; }
  std::string policy_type() const { return slots_.front()->policy->type(); }
  int64_t chunk_size() const { return slots_.front()->policy->chunk_size(); }
  bool uses_images() const { return slots_.front()->policy->uses_images(); }
  std::optional<PrefixCacheStats> prefix_cache_stats() const { return slots_.front()->policy->prefix_cache_stats(); }
  // The first slot's policy: all there is in a pool of one (tests look into it between rounds).
  Policy& front_policy() { return *slots_.front()->policy; }

 private:
  void give_back(Slot* slot);

  at::Device device_;
  std::vector<std::unique_ptr<Slot>> slots_;
  Manifest layout_;
  std::string frozen_digest_;
  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<Slot*> free_;
};

// The device a client trains on: CUDA device 0 when it asks for a GPU (throws SpecError naming
// spec.clients[index] when CUDA is not there), else the CPU.
at::Device training_device(const FederationSpec& spec, const ClientSpec& client);

}  // namespace zk0
