#pragma once
// Keys of objects to reconcile, as client-go's rate-limited work queue: a key is queued at most
// once however many events arrive, is never handed to two workers at once (a key added while it
// is being processed is queued again when done), can be delayed, and failing keys back off
// exponentially per key until forget().
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <deque>

namespace zk0::kube {

class WorkQueue {
 public:
  using Clock = std::chrono::steady_clock;

  void add(const std::string& key);
  void add_after(const std::string& key, std::chrono::milliseconds delay);
  void add_rate_limited(const std::string& key);  // 5 ms doubling per failure, at most 5 minutes
  void forget(const std::string& key);            // resets the key's backoff after a success

  std::optional<std::string> get();  // blocks; nullopt once shut down
  void done(const std::string& key);
  void shut_down();
  size_t size() const;

 private:
  void promote_due_locked();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::set<std::string> queued_, processing_, dirty_;
  std::multimap<Clock::time_point, std::string> delayed_;
  std::map<std::string, int> failures_;
  bool shut_down_ = false;
};

}  // namespace zk0::kube
