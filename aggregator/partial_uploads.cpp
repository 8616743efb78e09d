#include "aggregator/partial_uploads.h"

#include <algorithm>

namespace zk0 {

void PartialUploads::receiving(const std::string& client, grpc::ServerContext* ctx) {
  std::lock_guard<std::mutex> lock(mu_);
  receiving_[client] = ctx;
}

void PartialUploads::finished(const std::string& client, grpc::ServerContext* ctx) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = receiving_.find(client);
    if (it == receiving_.end() || it->second != ctx) return;
    receiving_.erase(it);
  }
  ended_.notify_all();
}

bool PartialUploads::end_receiving(const std::string& client, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = receiving_.find(client);
  if (it == receiving_.end()) return true;
  grpc::ServerContext* stream = it->second;
  stream->TryCancel();
  return ended_.wait_for(lock, wait, [&] {
    auto now = receiving_.find(client);
    return now == receiving_.end() || now->second != stream;
  });
}

void PartialUploads::drop_expired() {
  const auto now = Clock::now();
  for (auto it = kept_.begin(); it != kept_.end();) it = it->second.expires <= now ? kept_.erase(it) : std::next(it);
}

void PartialUploads::keep(const Key& key, Clock::time_point expires, std::unique_ptr<ParameterReceiver> receiver) {
  std::lock_guard<std::mutex> lock(mu_);
  drop_expired();
  kept_.erase(key.client);
  while (kept_.size() >= capacity_) {
    const auto oldest = std::min_element(kept_.begin(), kept_.end(),
                                         [](const auto& a, const auto& b) { return a.second.kept_at < b.second.kept_at; });
    kept_.erase(oldest);
  }
  kept_[key.client] = Kept{key, Clock::now(), expires, std::move(receiver)};
}

StreamPosition PartialUploads::position(const Key& key, const std::string& manifest_digest) {
  std::lock_guard<std::mutex> lock(mu_);
  drop_expired();
  auto it = kept_.find(key.client);
  if (it == kept_.end() || !(it->second.key == key) || it->second.receiver->manifest().digest_hex() != manifest_digest)
    return {};
  return it->second.receiver->position();
}

std::unique_ptr<ParameterReceiver> PartialUploads::take(const Key& key, StreamPosition at) {
  std::lock_guard<std::mutex> lock(mu_);
  drop_expired();
  auto it = kept_.find(key.client);
  if (it == kept_.end()) return nullptr;
  std::unique_ptr<ParameterReceiver> receiver = std::move(it->second.receiver);
  const bool matches = it->second.key == key && receiver->position() == at;
  kept_.erase(it);
  return matches ? std::move(receiver) : nullptr;
}

size_t PartialUploads::kept() const {
  std::lock_guard<std::mutex> lock(mu_);
  return kept_.size();
}

}  // namespace zk0
