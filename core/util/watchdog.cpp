#include "core/util/watchdog.h"

#include <cstdio>

namespace zk0 {

namespace {
std::string seconds(std::chrono::duration<double> d) {
  char text[32];
  std::snprintf(text, sizeof text, "%gs", d.count());
  return text;
}
}  // namespace

Watchdog::Watchdog(std::chrono::duration<double> limit, std::string limit_source)
    : limit_(std::chrono::duration_cast<Clock::duration>(limit)), limit_source_(std::move(limit_source)) {}

void Watchdog::arm(const std::string& activity) {
  std::lock_guard<std::mutex> lock(mu_);
  activity_ = activity;
  last_beat_ = Clock::now();
}

void Watchdog::beat() {
  std::lock_guard<std::mutex> lock(mu_);
  last_beat_ = Clock::now();
}

void Watchdog::disarm() {
  std::lock_guard<std::mutex> lock(mu_);
  activity_.clear();
}

std::string Watchdog::stalled() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (activity_.empty() || Clock::now() - last_beat_ <= limit_) return "";
  return activity_ + " made no progress for longer than " + seconds(limit_) + " (" + limit_source_ + ")";
}

}  // namespace zk0
