#include "operator/kube/informer.h"

#include <chrono>
#include <random>

#include "core/util/log.h"

namespace zk0::kube {

std::string object_key(const nlohmann::json& o) {
  const auto& m = o.at("metadata");
  return m.value("namespace", "") + "/" + m.value("name", "");
}

Informer::Informer(KubeClient& client, std::string list_path, std::string label_selector, Handler handler,
                   std::function<void(const std::string&)> on_restart, IndexKey index_key)
    : client_(client),
      list_path_(std::move(list_path)),
      label_selector_(std::move(label_selector)),
      handler_(std::move(handler)),
      on_restart_(std::move(on_restart)),
      index_key_(std::move(index_key)) {}

Informer::~Informer() { stop(); }

void Informer::start() { thread_ = std::thread([this] { run(); }); }

void Informer::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

bool Informer::wait_synced(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!synced_ && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return synced_;
}

std::optional<nlohmann::json> Informer::get(const std::string& ns, const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(ns + "/" + name);
  if (it == objects_.end()) return std::nullopt;
  return it->second;
}

std::vector<nlohmann::json> Informer::list(const std::function<bool(const nlohmann::json&)>& keep) const {
  std::vector<nlohmann::json> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [_, o] : objects_)
    if (keep(o)) out.push_back(o);
  return out;
}

std::vector<nlohmann::json> Informer::by_index(const std::string& key) const {
  std::vector<nlohmann::json> out;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return out;
  for (const auto& k : it->second) out.push_back(objects_.at(k));
  return out;
}

void Informer::apply(const nlohmann::json& object, bool deleted) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string key = object_key(object);
    if (index_key_) {
      if (auto old = objects_.find(key); old != objects_.end()) {
        auto entry = index_.find(index_key_(old->second));
        if (entry != index_.end() && entry->second.erase(key) && entry->second.empty()) index_.erase(entry);
      }
      const std::string index = index_key_(object);
      if (!deleted && !index.empty()) index_[index].insert(key);
    }
    if (deleted) objects_.erase(key);
    else objects_[key] = object;
  }
  handler_(object, deleted);
}

void Informer::relist() {
  std::string path = list_path_ + "?limit=500";
  if (!label_selector_.empty()) path += "&labelSelector=" + query_escape(label_selector_);
  std::map<std::string, nlohmann::json> listed;
  std::string version, next;
  do {  // paginated: a large cluster's pods do not arrive in one response
    const auto page = client_.get(path + (next.empty() ? "" : "&continue=" + query_escape(next)));
    for (auto item : page.at("items")) listed[object_key(item)] = item;
    version = page.at("metadata").value("resourceVersion", "");
    next = page.at("metadata").value("continue", "");
  } while (!next.empty());
  std::vector<nlohmann::json> vanished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, o] : objects_)
      if (!listed.count(k)) vanished.push_back(o);
    resource_version_ = version;
  }
  for (const auto& o : vanished) apply(o, true);
  for (const auto& [_, o] : listed) apply(o, false);
  synced_ = true;
}

void Informer::run() {
  std::mt19937 rng(std::random_device{}());
  int failures = 0;
  bool need_list = true;
  while (!stop_) {
    try {
      if (need_list) {
        relist();
        need_list = false;
      }
      // Ask the server to end each watch after a while (jittered, as client-go does) so that
      // connections are renewed and a silently dead one is noticed.
      const int timeout = 30 + static_cast<int>(rng() % 30);
      std::string path = list_path_ + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=" + std::to_string(timeout) +
                         "&resourceVersion=" + query_escape(resource_version_);
      if (!label_selector_.empty()) path += "&labelSelector=" + query_escape(label_selector_);
      bool gone = false;
      client_.watch(
          path,
          [&](const nlohmann::json& event) {
            const std::string type = event.value("type", "");
            const auto& object = event.at("object");
            if (type == "ERROR") {
              if (object.value("code", 0) == 410) {
                gone = true;
                return false;
              }
              throw ApiError(object.value("code", 0), object.value("reason", ""), "watch " + list_path_ + ": " + object.value("message", ""));
            }
            {
              std::lock_guard<std::mutex> lock(mu_);
              resource_version_ = object.at("metadata").value("resourceVersion", resource_version_);
            }
            if (type == "BOOKMARK") return true;
            apply(object, type == "DELETED");
            return true;
          },
          stop_);
      failures = 0;
      if (gone) {
        log_info("watch_expired", {kv("resource", list_path_), kv("action", "relist")});
        if (on_restart_) on_restart_("gone");
        need_list = true;
      }
    } catch (const ApiError& e) {
      if (stop_) break;
      if (e.gone()) need_list = true;
      ++failures;
      if (on_restart_) on_restart_(e.gone() ? "gone" : "reconnect");
      const int backoff_ms = std::min(30000, 200 << std::min(failures, 8));
      log_warn("watch_failed", {kv("resource", list_path_), kv("error", e.what()), kv("retry_in_ms", backoff_ms)});
      for (int waited = 0; waited < backoff_ms && !stop_; waited += 50) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

}  // namespace zk0::kube
