#pragma once
// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection: the holder
// renews every retry period; another candidate takes the Lease only after it went unrenewed for
// its lease duration, with an optimistic-concurrency update (resourceVersion) so that two
// candidates cannot both win. Losing the Lease ends leadership for good (the process exits and
// restarts clean); a graceful stop releases it so that a standby takes over at once.
#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "operator/kube/client.h"

namespace zk0::kube {

struct LeaseSettings {
  std::string namespace_;
  std::string name = "zk0-operator";
  std::string identity;
  std::chrono::seconds lease_duration{15};
  std::chrono::seconds renew_deadline{10};
  std::chrono::seconds retry_period{2};
};

class LeaderElector {
 public:
  LeaderElector(KubeClient& client, LeaseSettings settings);

  // Blocks until this candidate holds the Lease (true) or stop is set (false).
  bool acquire(const std::atomic<bool>& stop);
  // Renews until stop is set (returns true after releasing) or renewal fails for renew_deadline
  // (returns false: leadership lost).
  bool hold(const std::atomic<bool>& stop);

 private:
  bool try_acquire_or_renew();
  void release();
  std::string lease_path() const;

  KubeClient& client_;
  LeaseSettings settings_;
};

}  // namespace zk0::kube
