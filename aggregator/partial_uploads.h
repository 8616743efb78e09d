#pragma once
// Uploads whose stream broke, kept so that the client's next stream continues from the last
// verified chunk instead of sending its 400 MB again (proto: UploadPosition and
// UploadHeader.resume_from). Also the one place that knows which stream is receiving each
// client's upload: a client back on a new connection ends the stream its dead connection left
// open (the server may not notice a silent link for a minute) before asking where it stands.
//
// Each kept upload holds a whole update in memory, so at most `capacity` are kept; the oldest
// goes first. One per client, for one round and base: anything else the client starts drops it.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/transport/parameter_stream.h"

namespace zk0 {

class PartialUploads {
 public:
  using Clock = std::chrono::steady_clock;
  // Which upload: the client, the round and the global parameters it was trained from.
  struct Key {
    std::string client;
    int round = 0;
    std::string base_digest;
    bool operator==(const Key& o) const { return client == o.client && round == o.round && base_digest == o.base_digest; }
  };

  explicit PartialUploads(size_t capacity) : capacity_(capacity) {}

  // `ctx` is receiving `client`'s upload until finished(client, ctx).
  void receiving(const std::string& client, grpc::ServerContext* ctx);
  void finished(const std::string& client, grpc::ServerContext* ctx);
  // Cancels the stream receiving `client`'s upload, if any, and waits at most `wait` for it to end
  // (and keep what it received). False when it did not end in time.
  bool end_receiving(const std::string& client, std::chrono::milliseconds wait);

  // Keeps what a broken stream received, until `expires` (the round's deadline).
  void keep(const Key& key, Clock::time_point expires, std::unique_ptr<ParameterReceiver> receiver);
  // Where the kept upload of `key` with this manifest stands; {} when none is kept.
  StreamPosition position(const Key& key, const std::string& manifest_digest);
  // Hands over the kept upload of `key` to continue it at `at`; null when none is kept there.
  // Whatever else the client had kept is dropped.
  std::unique_ptr<ParameterReceiver> take(const Key& key, StreamPosition at);
  size_t kept() const;

 private:
  struct Kept {
    Key key;
    Clock::time_point kept_at, expires;
    std::unique_ptr<ParameterReceiver> receiver;
  };
  void drop_expired();  // requires mu_

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable ended_;
  std::map<std::string, grpc::ServerContext*> receiving_;  // by client
  std::map<std::string, Kept> kept_;                       // by client
};

}  // namespace zk0
