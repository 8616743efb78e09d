#include "operator/applied_children.h"

namespace zk0::op {

void AppliedChildren::apply(kube::KubeClient& client, const std::string& owner, const std::string& path, const nlohmann::json& object) {
  const std::string content = object.dump();
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto& children = applied_[owner];
    const auto it = children.find(path);
    if (it != children.end() && it->second.content == content && now - it->second.at < resync_period_) return;
  }
  client.patch(path, object, kube::PatchType::Apply);
  std::lock_guard<std::mutex> lock(mu_);
  applied_[owner][path] = {content, now};
}

bool AppliedChildren::recorded(const std::string& owner, const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = applied_.find(owner);
  return it != applied_.end() && it->second.count(path);
}

void AppliedChildren::record(const std::string& owner, const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  applied_[owner][path] = {"", std::chrono::steady_clock::now()};
}

void AppliedChildren::forget(const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  applied_.erase(owner);
}

}  // namespace zk0::op
