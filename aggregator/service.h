#pragma once
// The gRPC face of the coordinator (proto/zk0/v1/federation.proto). Each handler checks its
// input, turns it into one coordinator call and maps refusals to status codes.
#include <condition_variable>
#include <mutex>

#include "aggregator/coordinator.h"
#include "zk0/v1/federation.grpc.pb.h"

namespace zk0 {

class FederationService final : public v1::Federation::Service {
 public:
  FederationService(Coordinator& coordinator, const TransportSpec& transport)
      : coordinator_(coordinator), transport_(transport) {}

  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest*, v1::RegisterReply*) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*, v1::HeartbeatReply*) override;
  grpc::Status PollInstruction(grpc::ServerContext*, const v1::PollRequest*, v1::Instruction*) override;
  grpc::Status DownloadParameters(grpc::ServerContext*, const v1::DownloadRequest*,
                                  grpc::ServerWriter<v1::ParameterMessage>*) override;
  grpc::Status UploadUpdate(grpc::ServerContext*, grpc::ServerReader<v1::UploadMessage>*, v1::UploadReply*) override;
  grpc::Status ReportFailure(grpc::ServerContext*, const v1::FailureReport*, v1::FailureAck*) override;

 private:
  // A received update is held in memory until it is folded in; with dozens of clients uploading
  // at once that would be dozens of 400 MB buffers. At most this many uploads are received at a
  // time; the others wait, and gRPC's flow control holds their senders back.
  static constexpr int kConcurrentUploads = 4;

  Coordinator& coordinator_;
  TransportSpec transport_;
  std::mutex uploads_mu_;
  std::condition_variable upload_slot_;
  int uploads_in_progress_ = 0;
};

}  // namespace zk0
