#pragma once
// What the operator's reconcilers applied to their children, so that a pass writes only what
// changed. Server-side apply is idempotent but still a write; an object this process applied with
// the same content within the resync period is not applied again. The period also bounds how long
// a hand edit of a child survives. Entries are kept per owner ("namespace/name") and go with it.
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "operator/kube/client.h"

namespace zk0::op {

class AppliedChildren {
 public:
  explicit AppliedChildren(std::chrono::steady_clock::duration resync_period = std::chrono::minutes(10))
      : resync_period_(resync_period) {}

  // Server-side applies `object` at `path` for `owner`, unless this process applied the same
  // content there within the resync period.
  void apply(kube::KubeClient& client, const std::string& owner, const std::string& path, const nlohmann::json& object);
  // Objects made once and never replaced (a checkpoint key): whether `path` was recorded for
  // `owner`, and recording it.
  bool recorded(const std::string& owner, const std::string& path);
  void record(const std::string& owner, const std::string& path);
  // The owner is gone: so are its children (ownerReferences), and their entries.
  void forget(const std::string& owner);

 private:
  struct Applied {
    std::string content;
    std::chrono::steady_clock::time_point at;
  };
  const std::chrono::steady_clock::duration resync_period_;
  std::mutex mu_;
  std::map<std::string, std::map<std::string, Applied>> applied_;  // owner -> child path -> last apply
};

}  // namespace zk0::op
