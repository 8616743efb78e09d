#include "aggregator/service.h"

#include <chrono>

#include "core/transport/parameter_stream.h"

namespace zk0 {

namespace {

constexpr uint32_t kProtocolVersion = 1;

grpc::Status to_status(const Refusal& r) {
  switch (r.kind()) {
    case Refusal::Kind::UnknownClient: return {grpc::StatusCode::PERMISSION_DENIED, r.what()};
    case Refusal::Kind::UnknownSession: return {grpc::StatusCode::NOT_FOUND, r.what()};
    case Refusal::Kind::Incompatible: return {grpc::StatusCode::FAILED_PRECONDITION, r.what()};
    case Refusal::Kind::StaleRound: return {grpc::StatusCode::ABORTED, r.what()};
    case Refusal::Kind::InvalidUpdate: return {grpc::StatusCode::INVALID_ARGUMENT, r.what()};
  }
  return {grpc::StatusCode::INTERNAL, r.what()};
}

grpc::Status to_status(const TransferError& e) {
  switch (e.kind()) {
    case TransferError::Kind::ChunkChecksum:
    case TransferError::Kind::TensorHash:
    case TransferError::Kind::Incomplete: return {grpc::StatusCode::DATA_LOSS, e.what()};
    default: return {grpc::StatusCode::INVALID_ARGUMENT, e.what()};
  }
}

template <typename F>
grpc::Status guarded(F&& f) {
  try {
    return f();
  } catch (const Refusal& r) {
    return to_status(r);
  } catch (const std::exception& e) {
    return {grpc::StatusCode::INTERNAL, e.what()};
  }
}

TrainReport report_from(const v1::TrainMetrics& m) {
  TrainReport r;
  r.samples = m.samples();
  r.steps = m.steps();
  r.loss = m.loss();
  r.policy_loss = m.policy_loss();
  r.proximal_loss = m.proximal_loss();
  r.grad_norm = m.grad_norm();
  r.update_norm = m.update_norm();
  r.learning_rate = m.learning_rate();
  r.train_seconds = m.train_seconds();
  r.data_seconds = m.data_seconds();
  r.download_seconds = m.download_seconds();
  r.bytes_downloaded = m.bytes_downloaded();
  return r;
}

}  // namespace

grpc::Status FederationService::Register(grpc::ServerContext*, const v1::RegisterRequest* req, v1::RegisterReply* reply) {
  return guarded([&] {
    if (req->protocol_version() != kProtocolVersion)
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "protocol version " + std::to_string(req->protocol_version()) + " is not supported (this aggregator speaks " +
                              std::to_string(kProtocolVersion) + ")");
    if (req->client_name().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "client_name is required");
    reply->set_session_id(coordinator_.register_client(req->client_name(), req->policy_type(), req->frozen_digest(),
                                                       req->dataset_samples()));
    reply->set_heartbeat_interval_ms(static_cast<uint32_t>(Coordinator::kHeartbeatInterval.count()));
    reply->set_max_chunk_bytes(transport_.chunk_bytes);
    reply->set_total_rounds(static_cast<uint32_t>(coordinator_.total_rounds()));
    return grpc::Status::OK;
  });
}

grpc::Status FederationService::Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                                          v1::HeartbeatReply* reply) {
  return guarded([&] {
    reply->set_abandon_round(coordinator_.heartbeat(req->session_id(), req->state(), static_cast<int>(req->round())));
    return grpc::Status::OK;
  });
}

grpc::Status FederationService::PollInstruction(grpc::ServerContext*, const v1::PollRequest* req, v1::Instruction* out) {
  return guarded([&] {
    const Instruction ins = coordinator_.poll(req->session_id(), std::chrono::milliseconds(req->wait_ms()));
    switch (ins.kind) {
      case Instruction::Kind::Wait: out->set_kind(v1::Instruction::WAIT); break;
      case Instruction::Kind::Finish: out->set_kind(v1::Instruction::FINISH); break;
      case Instruction::Kind::Train:
        out->set_kind(v1::Instruction::TRAIN);
        out->set_round(static_cast<uint32_t>(ins.round));
        out->set_parameters_digest(ins.parameters_digest);
        out->mutable_config()->set_local_steps(static_cast<uint32_t>(ins.local_steps));
        out->mutable_config()->set_proximal_mu(ins.proximal_mu);
        out->mutable_config()->set_seed(ins.seed);
        out->set_deadline_ms(static_cast<uint32_t>(std::max<int64_t>(0, ins.deadline_ms)));
        break;
    }
    return grpc::Status::OK;
  });
}

grpc::Status FederationService::DownloadParameters(grpc::ServerContext* ctx, const v1::DownloadRequest* req,
                                                   grpc::ServerWriter<v1::ParameterMessage>* writer) {
  return guarded([&] {
    const auto global = coordinator_.global_for(req->session_id(), static_cast<int>(req->round()), req->parameters_digest());
    const auto start = std::chrono::steady_clock::now();
    const bool sent = send_parameter_messages<v1::ParameterMessage>(
        global->manifest, global->parameters, transport_.chunk_bytes,
        [&](const v1::ParameterMessage& msg) { return !ctx->IsCancelled() && writer->Write(msg); },
        &global->chunk_checksums);
    if (!sent) return grpc::Status(grpc::StatusCode::CANCELLED, "download cancelled by the client");
    coordinator_.record_download(global->manifest.total_bytes(),
                                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return grpc::Status::OK;
  });
}

grpc::Status FederationService::UploadUpdate(grpc::ServerContext* ctx, grpc::ServerReader<v1::UploadMessage>* reader,
                                             v1::UploadReply* reply) {
  {
    std::unique_lock<std::mutex> lock(uploads_mu_);
    upload_slot_.wait(lock, [&] { return uploads_in_progress_ < kConcurrentUploads || ctx->IsCancelled(); });
    if (ctx->IsCancelled()) return {grpc::StatusCode::CANCELLED, "upload cancelled while waiting for a slot"};
    ++uploads_in_progress_;
  }
  struct Release {
    FederationService& s;
    ~Release() {
      {
        std::lock_guard<std::mutex> lock(s.uploads_mu_);
        --s.uploads_in_progress_;
      }
      s.upload_slot_.notify_one();
    }
  } release{*this};
  const auto start = std::chrono::steady_clock::now();
  v1::UploadMessage msg;
  if (!reader->Read(&msg) || !msg.has_header())
    return {grpc::StatusCode::INVALID_ARGUMENT, "an upload starts with its header"};
  const v1::UploadHeader header = msg.header();
  const int round = static_cast<int>(header.round());
  return guarded([&] {
    ParameterReceiver receiver(coordinator_.trainable_layout());
    try {
      receive_parameter_messages<v1::UploadMessage>(*reader, receiver);
      ParameterSet update = receiver.finish();
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      reply->set_digest(receiver.manifest().digest_hex());
      coordinator_.submit(header.session_id(), round, header.base_digest(), std::move(update), report_from(header.metrics()),
                          receiver.bytes_received(), seconds);
      return grpc::Status::OK;
    } catch (const TransferError& e) {
      coordinator_.record_rejection(header.session_id(), round, e.reason(), e.what());
      return to_status(e);
    }
  });
}

grpc::Status FederationService::ReportFailure(grpc::ServerContext*, const v1::FailureReport* req, v1::FailureAck*) {
  return guarded([&] {
    coordinator_.report_failure(req->session_id(), static_cast<int>(req->round()), req->reason(), req->fatal());
    return grpc::Status::OK;
  });
}

}  // namespace zk0
