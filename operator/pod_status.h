#pragma once
// What a pod's status says, as the operator reads it for a run's pods and a membership's.
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>

namespace zk0::op {

// Pending, Running, Succeeded, Failed (Pending while the kubelet has not said).
std::string pod_phase(const nlohmann::json& pod);
// Container restarts, all containers.
int restarts_of(const nlohmann::json& pod);

// How the pod's main (first) container ended: its exit code, the kubelet's reason, and its
// termination message (what the process wrote to /dev/termination-log, or with
// FallbackToLogsOnError the end of its log when it failed without writing one).
struct Termination {
  int exit_code = -1;
  std::string reason, message;
};
std::optional<Termination> termination_of(const nlohmann::json& pod);

// The last non-empty line of a termination message that is not the aggregator's JSON summary:
// a process's own last word (`invalid spec ...: spec.clients[0].resources.gpu: ...`), capped.
std::string last_words(const std::string& message);

// Why a Pending pod does not start, in the scheduler's or the kubelet's words: reason, message.
std::optional<std::pair<std::string, std::string>> blocker_of(const nlohmann::json& pod);

}  // namespace zk0::op
