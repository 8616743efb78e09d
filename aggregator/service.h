#pragma once
// The gRPC face of the coordinator (proto/zk0/v1/federation.proto). Each handler checks its
// input, turns it into one coordinator call and maps refusals to status codes.
//
// The service assumes callers are hostile: an upload's header is authorised before it may wait
// for one of the few receive slots, a stream that stops sending is cancelled, and at shutdown
// every handler still waiting is released so that the server can stop.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <optional>
#include <mutex>
#include <thread>

#include "aggregator/coordinator.h"
#include "aggregator/partial_uploads.h"
#include "zk0/v1/federation.grpc.pb.h"

namespace zk0 {

// A bounded number of uploads received at a time, granted in arrival order. A waiter gives up
// at its deadline, when its call is cancelled or at shutdown, and its turn passes on.
class UploadSlots {
 public:
  explicit UploadSlots(int slots) : free_(slots) {}
  enum class Result { Granted, Cancelled, DeadlineExceeded, ShuttingDown };
  Result acquire(grpc::ServerContext* ctx, std::chrono::steady_clock::time_point deadline);
  void release();
  void shut_down();
  int waiting() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable changed_;
  int free_;
  uint64_t next_ticket_ = 0;
  std::deque<uint64_t> queue_;
  bool shutting_down_ = false;
};

// Cancels streams that make no progress: an upload whose next message does not arrive within its
// allowance holds a thread and, once granted, a slot that honest clients need.
class StallWatchdog {
 public:
  explicit StallWatchdog(std::chrono::milliseconds allowance);
  std::chrono::milliseconds allowance() const { return allowance_; }
  ~StallWatchdog();
  uint64_t watch(grpc::ServerContext* ctx);  // starts the clock
  void progress(uint64_t id);                // a message arrived
  void pause(uint64_t id);                   // waiting on us (a slot), not on the client
  void end_at(uint64_t id, std::chrono::steady_clock::time_point when);  // cancelled then, progress or not
  void forget(uint64_t id);
  void cancel_all();  // shutdown

 private:
  void loop();
  struct Watched {
    grpc::ServerContext* ctx;
    std::chrono::steady_clock::time_point last;
    bool paused = false;
    std::optional<std::chrono::steady_clock::time_point> end;
    bool cancelled = false;  // once
  };
  std::chrono::milliseconds allowance_;
  std::mutex mu_;
  std::condition_variable stop_cv_;
  std::map<uint64_t, Watched> watched_;
  uint64_t next_id_ = 1;
  bool stop_ = false;
  std::thread thread_;
};

class FederationService final : public v1::Federation::Service {
 public:
  // A received update is held in memory until it is folded in; with dozens of clients uploading
  // at once that would be dozens of 400 MB buffers. At most this many uploads are received at a
  // time; the others wait, and gRPC's flow control holds their senders back.
  static constexpr int kConcurrentUploads = 4;
  // How long a stream may go without its next message before it is cancelled: a tenth of the
  // round, within [5 s, 30 s] (a 4 MiB chunk takes under 2 s at 20 Mbit/s).
  static std::chrono::milliseconds stall_allowance(const StrategySpec& strategy);

  FederationService(Coordinator& coordinator, const FederationSpec& spec)
      : coordinator_(coordinator), transport_(spec.transport), watchdog_(stall_allowance(spec.strategy)) {}

  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest*, v1::RegisterReply*) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*, v1::HeartbeatReply*) override;
  grpc::Status PollInstruction(grpc::ServerContext*, const v1::PollRequest*, v1::Instruction*) override;
  grpc::Status DownloadParameters(grpc::ServerContext*, const v1::DownloadRequest*,
                                  grpc::ServerWriter<v1::ParameterMessage>*) override;
  grpc::Status UploadUpdate(grpc::ServerContext*, grpc::ServerReader<v1::UploadMessage>*, v1::UploadReply*) override;
  grpc::Status UploadPosition(grpc::ServerContext*, const v1::UploadPositionRequest*, v1::ResumePoint*) override;
  grpc::Status ReportFailure(grpc::ServerContext*, const v1::FailureReport*, v1::FailureAck*) override;

  // The run is over: the streams still moving parameters are cancelled, so that what a worker
  // on a slow link is told next (FINISH) does not wait behind bytes no round wants.
  void end_transfers();
  // Releases every handler that waits (for a slot, or on a stalled client) before
  // grpc::Server::Shutdown, which waits for handlers to return.
  void shut_down();

 private:
  Caller caller(grpc::ServerContext* ctx, const std::string& session) const;

  Coordinator& coordinator_;
  TransportSpec transport_;
  UploadSlots slots_{kConcurrentUploads};
  PartialUploads partials_{kConcurrentUploads};
  StallWatchdog watchdog_;
};

// The aggregator's gRPC server limits against connection and thread exhaustion: streams per
// connection, keepalive enforcement, idle and maximum connection age, and a thread quota sized
// for `clients` honest workers (each holds at most a poll, a heartbeat and a transfer).
void configure_server_hardening(grpc::ServerBuilder& builder, size_t clients);

}  // namespace zk0
