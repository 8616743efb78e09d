#include "aggregator/status_writer.h"

#include "core/util/log.h"

namespace zk0 {

StatusWriter::StatusWriter(std::function<void(const std::string&)> write, std::chrono::milliseconds min_interval)
    : write_(std::move(write)), min_interval_(min_interval), thread_([this] { loop(); }) {}

StatusWriter::~StatusWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void StatusWriter::publish(std::string document) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = std::move(document);
    ++published_;
  }
  changed_.notify_all();
}

void StatusWriter::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t wanted = published_;
  flush_requested_ = true;
  changed_.notify_all();
  written_.wait(lock, [&] { return done_ >= wanted || stop_; });
}

void StatusWriter::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    changed_.wait(lock, [&] { return stop_ || done_ < published_; });
    if (done_ == published_ && stop_) return;
    const uint64_t version = published_;
    const std::string document = pending_;
    lock.unlock();
    try {
      write_(document);
    } catch (const std::exception& e) {
      log_warn("status_write_failed", {kv("error", e.what())});  // the next change tries again
    }
    const auto next = std::chrono::steady_clock::now() + min_interval_;
    lock.lock();
    done_ = version;
    written_.notify_all();
    if (done_ == published_) flush_requested_ = false;
    // Changes during the pause are coalesced into one write; a flush cuts the pause short.
    if (!stop_) changed_.wait_until(lock, next, [&] { return stop_ || flush_requested_; });
  }
}

}  // namespace zk0
