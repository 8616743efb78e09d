#pragma once
// The statuses this operator wrote, until its informer has caught up with them. A reconcile that
// acted on the informer's older copy would count the same pod failure twice; freshest() gives
// it the object with the status as last written instead.
#include <nlohmann/json.hpp>

#include <map>
#include <mutex>
#include <string>

namespace zk0::op {

class StatusWrites {
 public:
  // `cached` with the status last written for it, when that write is newer than `cached`.
  nlohmann::json freshest(const nlohmann::json& cached);
  // The object as a status write returned it.
  void wrote(const std::string& key, nlohmann::json updated);
  void forget(const std::string& key);

 private:
  std::mutex mu_;
  std::map<std::string, nlohmann::json> written_;  // "namespace/name" -> the object as written
};

}  // namespace zk0::op
