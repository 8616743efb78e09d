#pragma once
// A cache of one kind of object kept current by list + watch, as client-go's reflector does:
// list (remembering the collection's resourceVersion), then watch from it with bookmarks; a
// broken stream re-watches from the last version seen, and 410 Gone (the version was compacted
// away) relists and reports objects that vanished meanwhile as deleted.
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "operator/kube/client.h"

namespace zk0::kube {

class Informer {
 public:
  // handler(object, deleted) runs on the informer's thread for every change.
  using Handler = std::function<void(const nlohmann::json& object, bool deleted)>;
  // list_path: a collection, e.g. /api/v1/pods; label_selector may be empty.
  // on_restart(reason) counts re-watches and relists ("reconnect", "gone"). index_key, when
  // given, files each object under a key (empty: none) that by_index answers without a scan.
  using IndexKey = std::function<std::string(const nlohmann::json& object)>;
  Informer(KubeClient& client, std::string list_path, std::string label_selector, Handler handler,
           std::function<void(const std::string& reason)> on_restart = {}, IndexKey index_key = {});
  ~Informer();

  void start();
  void stop();
  bool wait_synced(std::chrono::milliseconds timeout);  // true once the first list is in

  std::optional<nlohmann::json> get(const std::string& namespace_, const std::string& name) const;
  std::vector<nlohmann::json> list(const std::function<bool(const nlohmann::json&)>& keep) const;
  std::vector<nlohmann::json> by_index(const std::string& key) const;

 private:
  void run();
  void relist();
  void apply(const nlohmann::json& object, bool deleted);

  KubeClient& client_;
  std::string list_path_;
  std::string label_selector_;
  Handler handler_;
  std::function<void(const std::string&)> on_restart_;
  IndexKey index_key_;
  mutable std::mutex mu_;
  std::map<std::string, nlohmann::json> objects_;  // "namespace/name" -> object
  std::map<std::string, std::set<std::string>> index_;  // index key -> object keys
  std::string resource_version_;
  std::atomic<bool> synced_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string object_key(const nlohmann::json& object);  // "namespace/name"

}  // namespace zk0::kube
