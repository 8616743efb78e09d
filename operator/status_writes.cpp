#include "operator/status_writes.h"

#include "operator/kube/informer.h"

namespace zk0::op {

namespace {

uint64_t version_number(const nlohmann::json& object) {
  try {
    return std::stoull(object.at("metadata").value("resourceVersion", "0"));
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

nlohmann::json StatusWrites::freshest(const nlohmann::json& cached) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = written_.find(kube::object_key(cached));
  if (it == written_.end()) return cached;
  if (it->second["metadata"].value("uid", "") != cached["metadata"].value("uid", "") || version_number(cached) >= version_number(it->second)) {
    written_.erase(it);
    return cached;
  }
  nlohmann::json merged = cached;
  merged["status"] = it->second.value("status", nlohmann::json::object());
  return merged;
}

void StatusWrites::wrote(const std::string& key, nlohmann::json updated) {
  std::lock_guard<std::mutex> lock(mu_);
  written_[key] = std::move(updated);
}

void StatusWrites::forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  written_.erase(key);
}

}  // namespace zk0::op
