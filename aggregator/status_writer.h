#pragma once
// status.json off the coordinator's lock: every change hands the newest document over and one
// thread writes it (atomically, two fsyncs) at most every `min_interval`, so a client changing
// its state a thousand times a second costs the others nothing but a string copy.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace zk0 {

class StatusWriter {
 public:
  StatusWriter(std::function<void(const std::string&)> write, std::chrono::milliseconds min_interval);
  ~StatusWriter();  // writes what is pending
  StatusWriter(const StatusWriter&) = delete;
  StatusWriter& operator=(const StatusWriter&) = delete;

  void publish(std::string document);
  void flush();  // returns once the newest document is on disk

 private:
  void loop();

  std::function<void(const std::string&)> write_;
  std::chrono::milliseconds min_interval_;
  std::mutex mu_;
  std::condition_variable changed_, written_;
  std::string pending_;
  uint64_t published_ = 0, done_ = 0;
  bool stop_ = false, flush_requested_ = false;
  std::thread thread_;
};

}  // namespace zk0
