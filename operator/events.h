#pragma once
// Kubernetes Events about zk0's objects (what `kubectl describe` shows), each also one log line.
// Best effort: an event the API server refuses is logged, never an error of the reconcile.
#include <nlohmann/json.hpp>

#include <string>

#include "operator/kube/client.h"

namespace zk0::op {

// kind: FederationRun or FederationMembership; type: Normal or Warning.
void record_event(kube::KubeClient& client, const nlohmann::json& object, const std::string& kind, const std::string& type,
                  const std::string& reason, const std::string& message);

}  // namespace zk0::op
