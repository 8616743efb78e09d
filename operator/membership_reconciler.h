#pragma once
// The reconcile loop of FederationMemberships (a robot owner's cluster taking part in a run
// hosted elsewhere), level-based as the runs' loop: it waits visibly for the join token's Secret
// and the dataset's claim, keeps the worker's state claim, runs one worker pod that joins the run
// and replaces it when it fails (within kBackoffLimit; exit code 2, a refused join or an unusable
// dataset, is final), and brings the worker's own account back into the status: the run and
// client it joined as, the last round it trained, its last loss, the updates it delivered.
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "operator/applied_children.h"
#include "operator/children.h"
#include "operator/kube/client.h"
#include "operator/kube/informer.h"
#include "operator/reconciler.h"
#include "operator/status_writes.h"

namespace zk0::op {

// Work-queue keys of memberships: this prefix and "namespace/name" (a run's key has no prefix).
constexpr const char* kMembershipKeyPrefix = "membership:";
// The key of the run or membership a pod belongs to (empty for others): the pod informer's index.
std::string owner_key_of_pod(const nlohmann::json& pod);

class MembershipReconciler {
 public:
  static constexpr const char* kPath = "/apis/zk0.io/v1alpha1";
  // Failed pods a membership's worker may have before the membership fails.
  static constexpr int kBackoffLimit = 6;

  // read_worker_status reads a worker's GET /status (worker/contribution.h) at IP:PORT.
  MembershipReconciler(kube::KubeClient& client, OperatorSettings settings, kube::Informer& memberships, kube::Informer& pods,
                       StatusReader read_worker_status);

  // key: "namespace/name". Returns when to look again without an event (zero: only on events).
  std::chrono::milliseconds reconcile(const std::string& key);

 private:
  kube::KubeClient& client_;
  OperatorSettings settings_;
  kube::Informer& memberships_;
  kube::Informer& pods_;
  StatusReader read_worker_status_;
  StatusWrites written_;
  AppliedChildren children_;
};

}  // namespace zk0::op
