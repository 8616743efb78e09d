#include "worker/client.h"

#include <chrono>
#include <filesystem>
#include <thread>

#include "core/aggregation/parallel.h"
#include "core/codec/update_delta.h"
#include "core/ledger/ledger.h"
#include "core/util/fs.h"
#include "core/transport/channel.h"
#include "core/transport/parameter_stream.h"
#include "core/util/log.h"

namespace zk0 {

namespace {
using Clock = std::chrono::steady_clock;
constexpr uint32_t kProtocolVersion = 1;
constexpr std::chrono::seconds kReconnectAllowance{30};

std::chrono::system_clock::time_point in(std::chrono::milliseconds d) { return std::chrono::system_clock::now() + d; }

std::string describe(const grpc::Status& s) {
  return "code=" + std::to_string(static_cast<int>(s.error_code())) + " " + s.error_message();
}

// A stream reader that beats the watchdog with every message that arrives.
template <typename Reader>
struct ProgressReader {
  Reader& reader;
  Watchdog& progress;
  template <typename Message>
  bool Read(Message* message) {
    if (!reader.Read(message)) return false;
    progress.beat();
    return true;
  }
};
}  // namespace

WorkerClient::WorkerClient(const FederationSpec& spec, std::string client_name, const std::string& address,
                           const std::string& state_dir, const SharedWorkerParts& shared)
    : spec_(spec),
      name_(std::move(client_name)),
      registry_(shared.registry ? shared.registry : std::make_shared<prometheus::Registry>()),
      metrics_(*registry_, shared.registry ? std::map<std::string, std::string>{{"client", name_}}
                                           : std::map<std::string, std::string>{}),
      prefix_cache_metrics_(shared.prefix_cache_metrics ? shared.prefix_cache_metrics
                                                        : std::make_shared<PrefixCacheMetrics>(*registry_)),
      progress_(std::make_shared<Watchdog>(std::chrono::duration<double>(spec.strategy.round_timeout_seconds),
                                           "spec.strategy.roundTimeoutSeconds")),
      contribution_(std::make_shared<Contribution>(spec.name, name_, spec.rounds)) {
  channel_ = make_channel(address, spec_.transport, spec_.client(name_).tls);
  stub_ = v1::Federation::NewStub(channel_);
  trainer_ = std::make_unique<LocalTrainer>(spec_, spec_.client(name_), state_dir, shared.policies);
  if (const auto& c = spec_.transport.compression; c.codec.active() && c.error_feedback) {
    if (state_dir.empty())
      log_warn("error_feedback_in_memory", {kv("client", name_), kv("detail", "no --state-dir: the residual is lost when the worker restarts")});
    feedback_ = std::make_unique<ErrorFeedback>(state_dir.empty() ? "" : (std::filesystem::path(state_dir) / "error_feedback.safetensors").string(),
                                                c.codec);
  }
  dataset_opening_ = shared.dataset_opening ? shared.dataset_opening : std::make_shared<std::mutex>();
  held_globals_ = shared.held_globals ? shared.held_globals : std::make_shared<HeldGlobals>();
  if (const ClientTlsSpec& tls = spec_.client(name_).tls; spec_.transport.tls.mutual && !tls.key_file.empty()) {
    signer_ = SigningKey::from_pem(read_file(tls.key_file), "spec.clients[" + name_ + "].tls.keyFile " + tls.key_file);
  } else {
    signer_ = SigningKey::load_or_create_ed25519(state_dir.empty() ? "" : (std::filesystem::path(state_dir) / "ledger_ed25519.pem").string());
    signing_key_pem_ = signer_->public_key_pem();
  }
}

std::shared_ptr<const ParameterSet> HeldGlobals::intern(const std::string& digest, std::shared_ptr<const ParameterSet> parameters) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = held_.begin(); it != held_.end();) it = it->second.expired() ? held_.erase(it) : std::next(it);
  if (auto held = held_[digest].lock()) return held;
  held_[digest] = parameters;
  return parameters;
}

void WorkerClient::set_state(const std::string& s) {
  std::lock_guard<std::mutex> lock(session_mu_);
  state_ = s;
  contribution_->state(s);
  if (s == "idle") progress_->disarm();
  else progress_->arm(s);
}

bool WorkerClient::connect_and_register(const std::string& open_error) {
  // The aggregator may start after us or be restarting: keep trying for the start timeout.
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(spec_.strategy.start_timeout_seconds));
  for (int attempt = 0; !stop_; ++attempt) {
    v1::RegisterRequest req;
    req.set_protocol_version(kProtocolVersion);
    req.set_client_name(name_);
    req.set_policy_type(trainer_->policies().policy_type());
    req.set_frozen_digest(trainer_->frozen_digest());
    req.set_dataset_samples(open_error.empty() ? static_cast<uint64_t>(trainer_->dataset().size()) : 0);
    v1::RegisterReply reply;
    grpc::ClientContext ctx;
    ctx.set_deadline(in(std::chrono::seconds(10)));
    ctx.set_wait_for_ready(true);  // wait for the connection rather than failing while it is being made
    const grpc::Status s = stub_->Register(&ctx, req, &reply);
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(session_mu_);
      session_ = reply.session_id();
      log_info("registered", {kv("client", name_), kv("total_rounds", reply.total_rounds())});
      return true;
    }
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE && s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      log_error("registration_refused", {kv("client", name_), kv("status", describe(s))});
      return false;
    }
    if (Clock::now() >= deadline) {
      log_error("aggregator_unreachable", {kv("client", name_), kv("status", describe(s))});
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(1000, 100 * (1 << std::min(attempt, 4)))));
  }
  return false;
}

void WorkerClient::heartbeat_loop() {
  bool heartbeats_through = true;
  while (!done_) {
    v1::HeartbeatRequest req;
    {
      std::lock_guard<std::mutex> lock(session_mu_);
      req.set_session_id(session_);
      req.set_state(state_);
    }
    const int round = working_round_;
    req.set_round(static_cast<uint32_t>(round));
    v1::HeartbeatReply reply;
    grpc::ClientContext ctx;
    ctx.set_deadline(in(std::chrono::seconds(2)));
    // An answer may tell us the round is over. A failure is said once, when heartbeats stop
    // getting through: the aggregator drops a client it has not heard from for a few seconds.
    const grpc::Status s = stub_->Heartbeat(&ctx, req, &reply);
    if (s.ok() && reply.abandon_round() && round != 0 && round == working_round_) abandon_round_ = true;
    if (s.ok() && reply.run_finished() && !run_finished_.exchange(true)) {
      abandon_round_ = true;
      std::lock_guard<std::mutex> lock(in_flight_mu_);
      if (in_flight_) in_flight_->TryCancel();
    }
    if (!s.ok() && heartbeats_through) log_warn("heartbeat_failed", {kv("round", round), kv("status", describe(s))});
    heartbeats_through = s.ok();
    for (int i = 0; i < 10 && !done_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

WorkerClient::InFlight::InFlight(WorkerClient& client, grpc::ClientContext& ctx) : client_(client) {
  std::lock_guard<std::mutex> lock(client_.in_flight_mu_);
  client_.in_flight_ = &ctx;
  if (client_.run_finished_) ctx.TryCancel();
}

WorkerClient::InFlight::~InFlight() {
  std::lock_guard<std::mutex> lock(client_.in_flight_mu_);
  client_.in_flight_ = nullptr;
}

void WorkerClient::report_failure(int round, const std::string& reason, bool fatal) {
  v1::FailureReport req;
  {
    std::lock_guard<std::mutex> lock(session_mu_);
    req.set_session_id(session_);
  }
  req.set_round(static_cast<uint32_t>(round));
  req.set_reason(reason);
  req.set_fatal(fatal);
  v1::FailureAck ack;
  grpc::ClientContext ctx;
  ctx.set_deadline(in(std::chrono::seconds(5)));
  stub_->ReportFailure(&ctx, req, &ack);
}

bool WorkerClient::wait_for_link() {
  // After a dropped connection the channel reconnects with backoff; a retry sent before that
  // fails at once and proves nothing about the link. Meanwhile the round may end: the first
  // heartbeat through the restored link says so, and the transfer is not worth finishing.
  const auto deadline = Clock::now() + kReconnectAllowance;
  while (!stop_ && !abandon_round_ && Clock::now() < deadline)
    if (channel_->WaitForConnected(in(std::chrono::seconds(1)))) break;
  return !stop_ && !abandon_round_;
}

WorkerClient::Transfer WorkerClient::download(const v1::Instruction& ins, std::shared_ptr<const ParameterSet>& out,
                                              double& seconds, uint64_t& bytes) {
  const auto start = Clock::now();
  const CodecSettings& codec = spec_.transport.compression.codec;
  const uint64_t global_bytes = trainer_->layout().total_bytes();
  bytes = 0;
  for (size_t steps = 0;; ++steps) {
    const bool from_held = codec.active() && held_ && steps <= kMaxDownloadSteps;
    if (from_held && held_digest_ == ins.parameters_digest()) break;
    ParameterSet received;
    Manifest manifest;
    uint64_t received_bytes = 0;
    const Transfer t = receive(ins, from_held ? held_digest_ : "", received, manifest, received_bytes);
    bytes += received_bytes;
    if (!t.done) return t;
    if (codec.active()) metrics_.payload("download", manifest.encoding ? global_bytes : manifest.total_bytes(), manifest.total_bytes());
    if (!manifest.encoding) {  // the whole global, its digest checked against the instruction's
      held_ = std::make_shared<const ParameterSet>(std::move(received));
      held_digest_ = ins.parameters_digest();
      break;
    }
    try {
      ParameterSet next = apply_encoded_update(*held_, trainer_->layout(), received, manifest, codec, aggregation_threads());
      held_digest_ = build_manifest(next, aggregation_threads()).digest_hex();
      held_ = std::make_shared<const ParameterSet>(std::move(next));
      log_info("download_step_applied", {kv("round", ins.round()), kv("codec", manifest.encoding->codec),
                                         kv("bytes", manifest.total_bytes()), kv("reached", held_digest_)});
    } catch (const CodecError& e) {
      // The whole global comes next; nothing of the step is trained on.
      log_warn("download_step_undecodable", {kv("round", ins.round()), kv("codec", codec.describe()), kv("error", e.what())});
      held_.reset();
      held_digest_.clear();
    }
  }
  held_ = held_globals_->intern(held_digest_, std::move(held_));
  out = held_;
  seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!codec.active()) held_.reset();  // nothing to build on: the memory goes back after training
  return {true, ""};
}

WorkerClient::Transfer WorkerClient::receive(const v1::Instruction& ins, const std::string& held_digest, ParameterSet& out,
                                             Manifest& manifest, uint64_t& bytes) {
  std::unique_ptr<ParameterReceiver> receiver;
  std::string error;
  bool resumable = false;
  uint64_t held = 0;  // bytes verified when the previous attempt ended
  for (int failures = 0;;) {
    v1::DownloadRequest req;
    {
      std::lock_guard<std::mutex> lock(session_mu_);
      req.set_session_id(session_);
    }
    req.set_round(ins.round());
    req.set_parameters_digest(ins.parameters_digest());
    req.set_held_digest(held_digest);
    if (resumable) {
      receiver->expect_continuation();
      position_to_proto(receiver->position(), req.mutable_resume_from());
      metrics_.transfer_resumes.Add(metrics_.direction("download")).Increment();
      log_info("download_resumed", {kv("round", ins.round()), kv("tensor", receiver->position().tensor),
                                    kv("offset", receiver->position().offset), kv("bytes_kept", held)});
    } else {
      if (receiver) metrics_.transfer_resent_bytes.Add(metrics_.direction("download")).Increment(static_cast<double>(receiver->bytes_received()));
      receiver = held_digest.empty() ? std::make_unique<ParameterReceiver>(trainer_->layout())
                                     : std::make_unique<ParameterReceiver>(trainer_->layout(), 2, spec_.transport.compression.codec,
                                                                           ParameterReceiver::Plain::Accepted);
      held = 0;
    }
    grpc::ClientContext ctx;
    const InFlight in_flight(*this, ctx);
    auto reader = stub_->DownloadParameters(&ctx, req);
    const uint64_t before = receiver->bytes_received();
    error.clear();
    bool stream_intact = true;  // false: a chunk or the manifest was wrong, not just cut short
    bool damaged_chunk = false;
    try {
      ProgressReader<grpc::ClientReader<v1::ParameterMessage>> counted{*reader, *progress_};
      receive_parameter_messages<v1::ParameterMessage>(counted, *receiver);
    } catch (const TransferError& e) {
      error = std::string(e.reason()) + ": " + e.what();
      stream_intact = false;
      damaged_chunk = e.kind() == TransferError::Kind::ChunkChecksum;
      ctx.TryCancel();
    }
    const grpc::Status s = reader->Finish();
    metrics_.transfer_bytes.Add(metrics_.direction("download")).Increment(static_cast<double>(receiver->bytes_received() - before));
    if (error.empty() && !s.ok()) {
      if (s.error_code() == grpc::StatusCode::ABORTED || s.error_code() == grpc::StatusCode::NOT_FOUND) {
        log_warn("download_refused", {kv("round", ins.round()), kv("status", describe(s))});
        return {};
      }
      error = describe(s);
      // A resume point the aggregator refuses leaves only the start.
      stream_intact = s.error_code() != grpc::StatusCode::INVALID_ARGUMENT;
    }
    if (error.empty()) {
      try {
        out = receiver->finish();
        // An encoded step is checked once applied, by the digest of the global it rebuilds.
        if (!receiver->manifest().encoding && receiver->manifest().digest_hex() != ins.parameters_digest())
          throw TransferError(TransferError::Kind::BadManifest, "manifest digest " + receiver->manifest().digest_hex() +
                                                                   " is not the announced " + ins.parameters_digest());
        manifest = receiver->manifest();
        bytes = receiver->bytes_received();
        return {true, ""};
      } catch (const TransferError& e) {
        error = std::string(e.reason()) + ": " + e.what();
        stream_intact = false;
      }
    }
    // What passed its CRC32C stays when the stream was only cut short or a chunk arrived damaged.
    resumable = (stream_intact || damaged_chunk) && receiver->resumable() && !receiver->position().at_start();
    const uint64_t now_held = resumable ? receiver->bytes_received() : 0;
    if (now_held <= held) ++failures;  // attempts that moved the transfer forward are not failures
    held = now_held;
    log_warn("download_failed", {kv("round", ins.round()), kv("failures", failures), kv("bytes_kept", held), kv("error", error)});
    if (failures >= spec_.transport.transfer_attempts) break;
    if (!wait_for_link()) {
      log_warn("download_abandoned", {kv("round", ins.round())});
      return {};
    }
  }
  return {false, "download failed " + std::to_string(spec_.transport.transfer_attempts) + " times without progress: " + error};
}

StreamPosition WorkerClient::upload_position(const v1::Instruction& ins, const Manifest& manifest) {
  v1::UploadPositionRequest req;
  {
    std::lock_guard<std::mutex> lock(session_mu_);
    req.set_session_id(session_);
  }
  req.set_round(ins.round());
  req.set_base_digest(ins.parameters_digest());
  req.set_manifest_digest(manifest.digest_hex());
  v1::ResumePoint reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(in(std::chrono::seconds(30)));
  const grpc::Status s = stub_->UploadPosition(&ctx, req, &reply);
  if (!s.ok()) {
    log_warn("upload_position_unknown", {kv("round", ins.round()), kv("status", describe(s))});
    return {};
  }
  return position_from_proto(reply);
}

WorkerClient::Transfer WorkerClient::upload(const v1::Instruction& ins, const Manifest& manifest, const ParameterSet& parameters,
                                            const TrainReport& r) {
  std::string last_error;
  StreamPosition from;
  uint64_t held = 0;  // bytes the aggregator kept of this update, as of its last answer
  uint64_t sent = 0;  // chunk bytes written over all attempts
  UpdateClaims signed_claims;
  signed_claims.run = spec_.name;
  signed_claims.round = static_cast<int>(ins.round());
  signed_claims.client = name_;
  signed_claims.base_digest = ins.parameters_digest();
  signed_claims.update_digest = manifest.digest_hex();
  signed_claims.samples = r.samples;
  signed_claims.steps = r.steps;
  signed_claims.loss = r.loss;
  signed_claims.policy_loss = r.policy_loss;
  const std::string claims = signed_claims.canonical();
  const std::string claims_signature = signer_->sign(claims_message(claims));
  for (int failures = 0;;) {
    grpc::ClientContext ctx;
    const InFlight in_flight(*this, ctx);
    v1::UploadReply reply;
    auto writer = stub_->UploadUpdate(&ctx, &reply);
    v1::UploadMessage msg;
    auto* header = msg.mutable_header();
    {
      std::lock_guard<std::mutex> lock(session_mu_);
      header->set_session_id(session_);
    }
    header->set_round(ins.round());
    header->set_base_digest(ins.parameters_digest());
    if (!from.at_start()) position_to_proto(from, header->mutable_resume_from());
    auto* m = header->mutable_metrics();
    m->set_samples(r.samples);
    m->set_steps(r.steps);
    m->set_loss(r.loss);
    m->set_policy_loss(r.policy_loss);
    m->set_proximal_loss(r.proximal_loss);
    m->set_grad_norm(r.grad_norm);
    m->set_update_norm(r.update_norm);
    m->set_learning_rate(r.learning_rate);
    m->set_train_seconds(r.train_seconds);
    m->set_data_seconds(r.data_seconds);
    m->set_download_seconds(r.download_seconds);
    m->set_bytes_downloaded(r.bytes_downloaded);
    if (r.privacy_epsilon) m->set_privacy_epsilon(*r.privacy_epsilon);
    header->set_claims(claims);
    header->set_claims_signature(claims_signature);
    header->set_signing_key(signing_key_pem_);
    uint64_t sent_now = 0;
    if (writer->Write(msg))
      send_parameter_messages<v1::UploadMessage>(
          manifest, parameters, spec_.transport.chunk_bytes,
          [&](const v1::UploadMessage& m) {
            if (!writer->Write(m)) return false;
            if (m.has_chunk()) sent_now += m.chunk().data().size();
            progress_->beat();
            return true;
          },
          nullptr, from);
    writer->WritesDone();
    const grpc::Status s = writer->Finish();
    sent += sent_now;
    metrics_.transfer_bytes.Add(metrics_.direction("upload")).Increment(static_cast<double>(sent_now));
    if (s.ok()) {
      log_info("update_uploaded", {kv("round", ins.round()), kv("digest", reply.digest()), kv("loss", r.loss),
                                   kv("bytes_resent", sent - manifest.total_bytes())});
      metrics_.transfer_resent_bytes.Add(metrics_.direction("upload")).Increment(static_cast<double>(sent - manifest.total_bytes()));
      contribution_->uploaded();
      return {true, ""};
    }
    // A refused update is final and already counted by the aggregator. What broke on the way (a
    // dropped link, a stalled or damaged stream, a resume point no longer kept) is sent again,
    // from wherever the aggregator stands.
    const auto code = s.error_code();
    if (code != grpc::StatusCode::DATA_LOSS && code != grpc::StatusCode::UNAVAILABLE && code != grpc::StatusCode::CANCELLED &&
        code != grpc::StatusCode::FAILED_PRECONDITION) {
      log_warn("upload_failed", {kv("round", ins.round()), kv("status", describe(s))});
      metrics_.transfer_resent_bytes.Add(metrics_.direction("upload")).Increment(static_cast<double>(sent));
      return {};
    }
    last_error = describe(s);
    if (!wait_for_link()) {
      log_warn("upload_abandoned", {kv("round", ins.round())});
      metrics_.transfer_resent_bytes.Add(metrics_.direction("upload")).Increment(static_cast<double>(sent));
      return {};
    }
    from = upload_position(ins, manifest);
    const uint64_t now_held = bytes_before(manifest, from);
    if (now_held <= held) ++failures;  // attempts that moved the upload forward are not failures
    held = now_held;
    log_warn("upload_failed", {kv("round", ins.round()), kv("failures", failures), kv("bytes_kept", held), kv("status", last_error)});
    if (failures >= spec_.transport.transfer_attempts) break;
    if (!from.at_start()) {
      metrics_.transfer_resumes.Add(metrics_.direction("upload")).Increment();
      log_info("upload_resumed", {kv("round", ins.round()), kv("tensor", from.tensor), kv("offset", from.offset), kv("bytes_kept", held)});
    }
  }
  metrics_.transfer_resent_bytes.Add(metrics_.direction("upload")).Increment(static_cast<double>(sent));
  return {false, "upload failed " + std::to_string(spec_.transport.transfer_attempts) + " times without progress: " + last_error};
}

void WorkerClient::train_round(const v1::Instruction& ins) {
  const int round = static_cast<int>(ins.round());
  log_info("round_instructed", {kv("round", round), kv("local_steps", ins.config().local_steps()),
                                kv("proximal_mu", ins.config().proximal_mu())});
  working_round_ = round;
  abandon_round_ = false;
  struct Done {
    std::atomic<int>& round;
    ~Done() { round = 0; }
  } done{working_round_};
  set_state("downloading");
  std::shared_ptr<const ParameterSet> downloaded;
  double download_seconds = 0;
  uint64_t bytes = 0;
  const Transfer down = download(ins, downloaded, download_seconds, bytes);
  if (!down.done) {
    // Tell the aggregator now rather than leave it waiting for the round's deadline.
    if (!down.failure.empty()) report_failure(round, down.failure, false);
    set_state("idle");
    return;
  }
  const ParameterSet& global = *downloaded;
  set_state("training");
  RoundResult result;
  RoundTask task;
  task.round = round;
  task.local_steps = static_cast<int>(ins.config().local_steps());
  task.proximal_mu = ins.config().proximal_mu();
  task.seed = ins.config().seed();
  task.clip_norm = ins.config().clip_norm();
  task.base_digest = ins.parameters_digest();
  try {
    result = trainer_->train_round(global, task, &abandon_round_, [this] { progress_->beat(); });
  } catch (const RoundAbandoned& e) {
    log_warn("round_abandoned", {kv("round", round), kv("detail", e.what())});
    set_state("idle");
    return;
  }
  result.report.download_seconds = download_seconds;
  result.report.bytes_downloaded = bytes;
  metrics_.trained(result.report, result.step_seconds);
  contribution_->trained(round, result.report);
  if (const auto cache = trainer_->policies().prefix_cache_stats()) prefix_cache_metrics_->update(*cache);
  log_info("round_trained", {kv("round", round), kv("loss", result.report.loss), kv("policy_loss", result.report.policy_loss),
                             kv("proximal_loss", result.report.proximal_loss), kv("update_norm", result.report.update_norm),
                             kv("seconds", result.report.train_seconds)});
  if (before_upload_) before_upload_(task, global, result);
  set_state("uploading");
  Transfer up;
  if (const CodecSettings& codec = spec_.transport.compression.codec; codec.active()) {
    if (feedback_) feedback_->begin(ins.parameters_digest());
    const EncodedUpdate encoded = encode_trained_update(result.update, global, codec, feedback_.get(), aggregation_threads());
    metrics_.payload("upload", result.update.total_bytes(), encoded.manifest.total_bytes());
    up = upload(ins, encoded.manifest, encoded.encoded, result.report);
    // Only what the aggregator took was delivered; a refused upload leaves the residual as it was.
    if (up.done && feedback_) feedback_->keep(encoded.compensated, encoded.decoded);
  } else {
    up = upload(ins, build_manifest(result.update), result.update, result.report);
  }
  if (!up.done && !up.failure.empty()) report_failure(round, up.failure, false);
  set_state("idle");
}

int WorkerClient::run() {
  set_thread_log_component("worker/" + name_);
  std::string open_error;
  try {
    std::lock_guard<std::mutex> opening(*dataset_opening_);
    trainer_->open_dataset();
    log_info("dataset_opened", {kv("client", name_), kv("dataset", trainer_->dataset().info().source),
                                kv("samples", trainer_->dataset().size()), kv("episodes", trainer_->dataset().episodes().size())});
  } catch (const std::exception& e) {
    open_error = e.what();
  }
  if (!connect_and_register(open_error)) return 1;
  if (!open_error.empty()) {
    log_error("dataset_failed", {kv("client", name_), kv("error", open_error)});
    report_failure(0, "dataset: " + open_error, true);
    return 1;
  }
  std::thread heartbeat([this] {
    set_thread_log_component("worker/" + name_);
    heartbeat_loop();
  });
  int rc = 1;
  auto unreachable_since = Clock::now();
  bool reachable = true;
  while (!stop_) {
    if (run_finished_) {
      log_info("run_finished", {kv("client", name_)});
      rc = 0;
      break;
    }
    v1::PollRequest req;
    {
      std::lock_guard<std::mutex> lock(session_mu_);
      req.set_session_id(session_);
    }
    req.set_wait_ms(2000);
    v1::Instruction ins;
    grpc::ClientContext ctx;
    ctx.set_deadline(in(std::chrono::seconds(10)));
    const grpc::Status s = stub_->PollInstruction(&ctx, req, &ins);
    if (!s.ok()) {
      if (s.error_code() == grpc::StatusCode::NOT_FOUND) {  // the aggregator restarted and forgot us
        if (!connect_and_register("")) break;
        continue;
      }
      if (reachable) unreachable_since = Clock::now();
      reachable = false;
      if (Clock::now() - unreachable_since > std::chrono::duration<double>(spec_.strategy.start_timeout_seconds)) {
        log_error("aggregator_unreachable", {kv("client", name_), kv("status", describe(s))});
        break;
      }
      // Waiting on the channel, not in a sleep: a synchronous client with no call in flight
      // leaves a reconnection to gRPC's backup poller, which looks every 5 s, so a link that came
      // back would be seen late or missed between two failed polls.
      const auto next_poll = Clock::now() + std::chrono::milliseconds(500);
      channel_->WaitForConnected(in(std::chrono::milliseconds(500)));
      std::this_thread::sleep_until(next_poll);
      continue;
    }
    reachable = true;
    if (ins.kind() == v1::Instruction::FINISH) {
      run_finished_ = true;
      continue;
    }
    if (ins.kind() != v1::Instruction::TRAIN) continue;
    try {
      train_round(ins);
    } catch (const PrivacyBudgetSpent& e) {
      log_warn("privacy_budget_spent", {kv("client", name_), kv("round", ins.round()), kv("detail", e.what())});
      report_failure(static_cast<int>(ins.round()), e.what(), true);
      rc = 0;
      break;
    } catch (const std::exception& e) {
      log_error("training_failed", {kv("client", name_), kv("round", ins.round()), kv("error", e.what())});
      report_failure(static_cast<int>(ins.round()), e.what(), true);
      break;
    }
  }
  done_ = true;
  heartbeat.join();
  return rc;
}

}  // namespace zk0
