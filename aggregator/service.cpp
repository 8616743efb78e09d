#include "aggregator/service.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/auth_context.h>

#include <algorithm>
#include <chrono>

#include "core/transport/parameter_stream.h"
#include "core/util/log.h"

namespace zk0 {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kProtocolVersion = 1;
// Until the header arrives a stream has proved nothing: it gets less time than one that is
// authorised and sending chunks.
constexpr std::chrono::seconds kHeaderAllowance{10};
// How long UploadPosition waits for a stream it cancelled to hand over what it received.
constexpr std::chrono::seconds kEndReceivingAllowance{10};

grpc::Status to_status(const Refusal& r) {
  switch (r.kind()) {
    case Refusal::Kind::UnknownClient:
    case Refusal::Kind::PermissionDenied: return {grpc::StatusCode::PERMISSION_DENIED, r.what()};
    case Refusal::Kind::UnknownSession: return {grpc::StatusCode::NOT_FOUND, r.what()};
    case Refusal::Kind::Incompatible: return {grpc::StatusCode::FAILED_PRECONDITION, r.what()};
    case Refusal::Kind::StaleRound: return {grpc::StatusCode::ABORTED, r.what()};
    case Refusal::Kind::Busy: return {grpc::StatusCode::ALREADY_EXISTS, r.what()};
    case Refusal::Kind::InvalidUpdate:
    case Refusal::Kind::InvalidArgument: return {grpc::StatusCode::INVALID_ARGUMENT, r.what()};
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
  if (m.has_privacy_epsilon() && std::isfinite(m.privacy_epsilon()) && m.privacy_epsilon() >= 0) r.privacy_epsilon = m.privacy_epsilon();
  return r;
}

}  // namespace

// --- UploadSlots -----------------------------------------------------------------------------

UploadSlots::Result UploadSlots::acquire(grpc::ServerContext* ctx, Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t ticket = next_ticket_++;
  queue_.push_back(ticket);
  const auto leave = [&](Result r) {
    queue_.erase(std::find(queue_.begin(), queue_.end(), ticket));
    changed_.notify_all();  // the next in line may be the one that can go now
    return r;
  };
  for (;;) {
    if (shutting_down_) return leave(Result::ShuttingDown);
    if (ctx->IsCancelled()) return leave(Result::Cancelled);
    if (free_ > 0 && queue_.front() == ticket) {
      --free_;
      queue_.pop_front();
      changed_.notify_all();
      return Result::Granted;
    }
    const auto now = Clock::now();
    if (now >= deadline) return leave(Result::DeadlineExceeded);
    // A cancelled call is not an event this wait can see: look again every 100 ms.
    changed_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(100)));
  }
}

void UploadSlots::release() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++free_;
  }
  changed_.notify_all();
}

void UploadSlots::shut_down() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
  }
  changed_.notify_all();
}

int UploadSlots::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(queue_.size());
}

// --- StallWatchdog ---------------------------------------------------------------------------

StallWatchdog::StallWatchdog(std::chrono::milliseconds allowance) : allowance_(allowance), thread_([this] { loop(); }) {}

StallWatchdog::~StallWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
}

uint64_t StallWatchdog::watch(grpc::ServerContext* ctx) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_id_++;
  // The first message gets kHeaderAllowance (or the whole allowance, when that is shorter).
  const auto header = std::min<std::chrono::milliseconds>(allowance_, kHeaderAllowance);
  Watched& w = watched_[id];
  w.ctx = ctx;
  w.last = Clock::now() - (allowance_ - header);
  return id;
}

void StallWatchdog::progress(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = watched_.find(id);
  if (it == watched_.end()) return;
  it->second.last = Clock::now();
  it->second.paused = false;
}

void StallWatchdog::pause(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = watched_.find(id);
  if (it != watched_.end()) it->second.paused = true;
}

void StallWatchdog::end_at(uint64_t id, std::chrono::steady_clock::time_point when) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = watched_.find(id);
  if (it != watched_.end()) it->second.end = when;
}

void StallWatchdog::forget(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  watched_.erase(id);
}

void StallWatchdog::cancel_all() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, w] : watched_) w.ctx->TryCancel();
}

void StallWatchdog::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const auto now = Clock::now();
    for (auto& [id, w] : watched_) {
      if (w.cancelled) continue;
      if (w.end && now >= *w.end) {
        w.ctx->TryCancel();
        w.cancelled = true;
      } else if (!w.paused && now - w.last > allowance_) {
        log_warn("stream_stalled", {kv("peer", w.ctx->peer()), kv("seconds_without_progress",
                                                                  std::chrono::duration<double>(now - w.last).count())});
        w.ctx->TryCancel();
        w.cancelled = true;
      }
    }
    stop_cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stop_; });
  }
}

// --- FederationService -----------------------------------------------------------------------

std::chrono::milliseconds FederationService::stall_allowance(const StrategySpec& strategy) {
  const double seconds = std::clamp(strategy.round_timeout_seconds / 10, 5.0, 30.0);
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

Caller FederationService::caller(grpc::ServerContext* ctx, const std::string& session) const {
  Caller c;
  c.session = session;
  if (!transport_.tls.mutual) return c;
  const auto auth = ctx->auth_context();
  if (!auth) return c;
  const auto pem = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pem.empty()) return c;
  try {
    c.certificate_pem.assign(pem.front().data(), pem.front().size());
    c.certificate = parse_certificate(c.certificate_pem);
  } catch (const std::exception&) {
    c.certificate_pem.clear();
  }
  return c;
}

void FederationService::end_transfers() { watchdog_.cancel_all(); }

void FederationService::shut_down() {
  slots_.shut_down();
  watchdog_.cancel_all();
}

grpc::Status FederationService::Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req, v1::RegisterReply* reply) {
  return guarded([&] {
    if (req->protocol_version() != kProtocolVersion)
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "protocol version " + std::to_string(req->protocol_version()) + " is not supported (this aggregator speaks " +
                              std::to_string(kProtocolVersion) + ")");
    if (req->client_name().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "client_name is required");
    reply->set_session_id(coordinator_.register_client(req->client_name(), req->policy_type(), req->frozen_digest(),
                                                       req->dataset_samples(), caller(ctx, "").certificate));
    reply->set_heartbeat_interval_ms(static_cast<uint32_t>(Coordinator::kHeartbeatInterval.count()));
    reply->set_max_chunk_bytes(transport_.chunk_bytes);
    reply->set_total_rounds(static_cast<uint32_t>(coordinator_.total_rounds()));
    return grpc::Status::OK;
  });
}

grpc::Status FederationService::Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* req, v1::HeartbeatReply* reply) {
  return guarded([&] {
    const Coordinator::HeartbeatAnswer answer = coordinator_.heartbeat(caller(ctx, req->session_id()), req->state(), static_cast<int>(req->round()));
    reply->set_abandon_round(answer.abandon_round);
    reply->set_run_finished(answer.run_finished);
    return grpc::Status::OK;
  });
}

grpc::Status FederationService::PollInstruction(grpc::ServerContext* ctx, const v1::PollRequest* req, v1::Instruction* out) {
  return guarded([&] {
    const Instruction ins = coordinator_.poll(caller(ctx, req->session_id()), std::chrono::milliseconds(req->wait_ms()));
    switch (ins.kind) {
      case Instruction::Kind::Wait: out->set_kind(v1::Instruction::WAIT); break;
      case Instruction::Kind::Finish: out->set_kind(v1::Instruction::FINISH); break;
      case Instruction::Kind::Train:
        out->set_kind(v1::Instruction::TRAIN);
        out->set_round(static_cast<uint32_t>(ins.round));
        out->set_parameters_digest(ins.parameters_digest);
        out->mutable_config()->set_local_steps(static_cast<uint32_t>(ins.local_steps));
        out->mutable_config()->set_proximal_mu(ins.proximal_mu);
        out->mutable_config()->set_clip_norm(ins.clip_norm);
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
    const Caller who = caller(ctx, req->session_id());
    const auto global = coordinator_.global_for(who, static_cast<int>(req->round()), req->parameters_digest(), req->held_digest());
    const std::string client = coordinator_.client_name(who);
    const auto start = Clock::now();
    const StreamPosition from = req->has_resume_from() ? position_from_proto(req->resume_from()) : StreamPosition{};
    // A receiver that stops reading blocks Write under flow control; the watchdog cancels it.
    const uint64_t watch = watchdog_.watch(ctx);
    watchdog_.progress(watch);
    bool sent = false;
    try {
      sent = send_parameter_messages<v1::ParameterMessage>(
          global->manifest, global->parameters, transport_.chunk_bytes,
          [&](const v1::ParameterMessage& msg) {
            const bool ok = !ctx->IsCancelled() && writer->Write(msg);
            watchdog_.progress(watch);
            // Write returns once flow control lets the chunk go: the worker is reading.
            if (ok) coordinator_.transfer_progressed(client);
            return ok;
          },
          &global->chunk_checksums, from);
    } catch (const std::out_of_range& e) {
      watchdog_.forget(watch);
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string("resume_from: ") + e.what());
    }
    watchdog_.forget(watch);
    if (!sent) return grpc::Status(grpc::StatusCode::CANCELLED, "download cancelled");
    const uint64_t kept = bytes_before(global->manifest, from);
    if (kept > 0) coordinator_.record_resume(client, static_cast<int>(req->round()), "download", kept);
    coordinator_.record_download(global->manifest.total_bytes() - kept, std::chrono::duration<double>(Clock::now() - start).count());
    return grpc::Status::OK;
  });
}

grpc::Status FederationService::UploadUpdate(grpc::ServerContext* ctx, grpc::ServerReader<v1::UploadMessage>* reader,
                                             v1::UploadReply* reply) {
  const auto start = Clock::now();
  struct Watch {
    StallWatchdog& w;
    uint64_t id;
    ~Watch() { w.forget(id); }
  } watch{watchdog_, watchdog_.watch(ctx)};
  v1::UploadMessage msg;
  if (!reader->Read(&msg) || !msg.has_header())
    return ctx->IsCancelled() ? grpc::Status(grpc::StatusCode::CANCELLED, "no upload header arrived in time")
                              : grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "an upload starts with its header");
  const v1::UploadHeader header = msg.header();
  return guarded([&] {
    // Who may upload is decided before the stream costs a slot, memory or a hash.
    const UploadPermit permit =
        coordinator_.begin_upload(caller(ctx, header.session_id()), static_cast<int>(header.round()), header.base_digest(),
                                  {header.claims(), header.claims_signature(), header.signing_key()});
    // Ends after the upload did (declared first), so that UploadPosition, waiting for it, finds the
    // client free to start the next stream.
    struct Receiving {
      PartialUploads& p;
      const std::string& client;
      grpc::ServerContext* ctx;
      ~Receiving() { p.finished(client, ctx); }
    };
    partials_.receiving(permit.client, ctx);
    Receiving receiving{partials_, permit.client, ctx};
    struct EndUnlessSubmitted {
      Coordinator& c;
      const UploadPermit& p;
      bool submitted = false;
      ~EndUnlessSubmitted() {
        if (!submitted) c.end_upload(p);
      }
    } pending{coordinator_, permit};
    watchdog_.pause(watch.id);
    switch (slots_.acquire(ctx, permit.deadline)) {
      case UploadSlots::Result::Granted: break;
      case UploadSlots::Result::Cancelled: return grpc::Status(grpc::StatusCode::CANCELLED, "upload cancelled while waiting for a slot");
      case UploadSlots::Result::DeadlineExceeded:
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the round ended while the upload waited for a slot");
      case UploadSlots::Result::ShuttingDown: return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the aggregator is shutting down");
    }
    struct Release {
      UploadSlots& s;
      ~Release() { s.release(); }
    } release{slots_};
    watchdog_.progress(watch.id);
    const PartialUploads::Key key{permit.client, permit.round, header.base_digest()};
    std::unique_ptr<ParameterReceiver> receiver;
    if (header.has_resume_from()) {
      const StreamPosition from = position_from_proto(header.resume_from());
      receiver = partials_.take(key, from);
      if (!receiver)
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            "nothing of this upload is kept at tensor " + std::to_string(from.tensor) + " offset " +
                                std::to_string(from.offset) + ": send it from the first byte");
      receiver->expect_continuation();
      coordinator_.record_resume(permit.client, permit.round, "upload", receiver->bytes_received());
    } else {
      partials_.take(key, {});  // a fresh start replaces whatever was kept
      receiver = std::make_unique<ParameterReceiver>(coordinator_.trainable_layout(), 2, transport_.compression.codec);
    }
    // What arrived verified stays for the client's next stream when this one breaks.
    const auto keep_if_resumable = [&] {
      const uint64_t kept = receiver->resumable() ? receiver->bytes_received() : 0;
      log_info("upload_interrupted", {kv("client", permit.client), kv("round", permit.round), kv("bytes_kept", kept)});
      if (kept > 0) partials_.keep(key, permit.deadline, std::move(receiver));
    };
    try {
      struct ProgressReader {
        grpc::ServerReader<v1::UploadMessage>& r;
        StallWatchdog& w;
        uint64_t id;
        Coordinator& coordinator;
        const std::string& client;
        bool Read(v1::UploadMessage* m) {
          const bool ok = r.Read(m);
          w.progress(id);
          if (ok) coordinator.transfer_progressed(client);
          return ok;
        }
      } progress_reader{*reader, watchdog_, watch.id, coordinator_, permit.client};
      // A synchronous round closes at its deadline: what is still arriving then is no longer
      // wanted, and receiving it would hold a slot and the worker's uplink for nothing.
      if (permit.ends_with_round) watchdog_.end_at(watch.id, permit.deadline);
      receive_parameter_messages<v1::UploadMessage>(progress_reader, *receiver);
      if (ctx->IsCancelled()) {
        if (permit.ends_with_round && Clock::now() >= permit.deadline) {
          log_warn("upload_stopped", {kv("client", permit.client), kv("round", permit.round), kv("reason", "round_deadline"),
                                      kv("bytes_received", receiver->bytes_received())});
          return grpc::Status(grpc::StatusCode::ABORTED, "round " + std::to_string(permit.round) + " closed at its deadline after " +
                                                             std::to_string(receiver->bytes_received()) + " bytes of this update arrived");
        }
        keep_if_resumable();
        return grpc::Status(grpc::StatusCode::CANCELLED, "upload stalled or cancelled");
      }
      ParameterSet update = receiver->finish();
      coordinator_.keep_upload(permit, update, receiver->manifest());
      if (transport_.compression.codec.active()) {
        try {
          update = coordinator_.decode_upload(permit, update, receiver->manifest());
        } catch (const CodecError& e) {
          coordinator_.record_rejection(permit, "undecodable", e.what());
          return grpc::Status(grpc::StatusCode::DATA_LOSS, e.what());
        }
      }
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      reply->set_digest(receiver->manifest().digest_hex());
      pending.submitted = true;  // submit ends the upload either way
      coordinator_.submit(permit, std::move(update), report_from(header.metrics()), receiver->manifest().digest_hex(),
                          receiver->bytes_received(), seconds);
      return grpc::Status::OK;
    } catch (const TransferError& e) {
      coordinator_.record_rejection(permit, e.reason(), e.what());
      // A damaged chunk was not taken; the stream stopping short is a broken link.
      if (e.kind() == TransferError::Kind::ChunkChecksum || e.kind() == TransferError::Kind::Incomplete) keep_if_resumable();
      return to_status(e);
    }
  });
}

grpc::Status FederationService::UploadPosition(grpc::ServerContext* ctx, const v1::UploadPositionRequest* req,
                                               v1::ResumePoint* reply) {
  return guarded([&] {
    const std::string client = coordinator_.client_name(caller(ctx, req->session_id()));
    // The stream of a connection that died silently is still receiving: its end decides what is kept.
    if (!partials_.end_receiving(client, kEndReceivingAllowance))
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the previous upload stream of client '" + client + "' is still ending");
    position_to_proto(partials_.position({client, static_cast<int>(req->round()), req->base_digest()}, req->manifest_digest()),
                      reply);
    return grpc::Status::OK;
  });
}

grpc::Status FederationService::ReportFailure(grpc::ServerContext* ctx, const v1::FailureReport* req, v1::FailureAck*) {
  return guarded([&] {
    coordinator_.report_failure(caller(ctx, req->session_id()), static_cast<int>(req->round()), req->reason(), req->fatal());
    return grpc::Status::OK;
  });
}

void configure_server_hardening(grpc::ServerBuilder& builder, size_t clients) {
  // A worker keeps at most three calls open (a long poll, a heartbeat, a transfer).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 16);
  // Keepalive: the server pings idle connections to find dead peers behind NAT, and refuses
  // clients that ping more often than every 10 s without data (a cheap way to keep it busy).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10 * 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  // Workers heartbeat every second; a connection idle for minutes holds nothing worth keeping.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, 5 * 60 * 1000);
  // Connections are recycled (the client reconnects transparently); calls in flight get a grace
  // long enough for a 400 MB transfer on a slow link.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, 2 * 60 * 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 30 * 60 * 1000);
  // Calls beyond the thread quota are refused with RESOURCE_EXHAUSTED instead of growing the
  // process without bound.
  grpc::ResourceQuota quota("zk0-aggregator");
  quota.SetMaxThreads(static_cast<int>(std::max<size_t>(64, 4 * clients + 32)));
  builder.SetResourceQuota(quota);
}

}  // namespace zk0
