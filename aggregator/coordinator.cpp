#include "aggregator/coordinator.h"

#include <cmath>
#include <filesystem>
#include <set>

#include "aggregator/checkpoint.h"
#include "aggregator/recompute.h"
#include "aggregator/round_records.h"
#include "core/aggregation/deltas.h"
#include "core/aggregation/parallel.h"
#include "core/codec/update_delta.h"
#include "core/security/random.h"
#include "core/tensor/hash.h"
#include "core/tensor/safetensors.h"
#include "core/transport/parameter_stream.h"
#include "core/util/base64.h"
#include "core/util/fs.h"
#include "core/util/log.h"
#include "core/util/seed.h"

namespace zk0 {

using Clock = std::chrono::steady_clock;

namespace {

std::string session_key(const std::string& session) { return to_hex(sha256(session.data(), session.size())); }

}  // namespace

uint64_t client_round_seed(uint64_t run_seed, int round, const std::string& client) {
  return mix_seed(mix_seed(run_seed, static_cast<uint64_t>(round)), hash_string(client));
}

bool is_reportable_worker_state(const std::string& state) {
  static const std::set<std::string> kStates = {"idle", "downloading", "training", "uploading"};
  return kStates.count(state) > 0;
}

Coordinator::Coordinator(const FederationSpec& spec)
    : spec_(spec),
      loop_watchdog_(std::chrono::duration<double>(spec.strategy.round_timeout_seconds), "spec.strategy.roundTimeoutSeconds") {
  policy_ = make_policy(spec_.policy);
  // Rules that need a whole round spill it here; what a killed aggregator left is stale.
  const std::string scratch = spec_.output_dir + "/scratch";
  std::filesystem::remove_all(scratch);
  strategy_ = make_strategy(spec_, scratch);
  if (spec_.transport.compression.codec.active())
    download_steps_ = std::make_unique<DownloadSteps>(spec_.transport.compression.codec, spec_.transport.compression.error_feedback,
                                                      spec_.transport.chunk_bytes);
  evaluation_ = std::make_unique<EvaluationSets>(spec_.evaluation, *policy_);
  // Checkpoints carry the statistics the server evaluates with (LeRobot's processor files).
  policy_->set_normalization(evaluation_->primary_dataset().state_stats(), evaluation_->primary_dataset().action_stats());
  fingerprint_ = resume_fingerprint(spec_);
  frozen_digest_ = build_manifest(to_parameter_set(policy_->frozen_parameters())).digest_hex();
  outputs_ = std::make_unique<RunOutputs>(spec_, spec_.output_dir);
  status_writer_ = std::make_unique<StatusWriter>([this](const std::string& doc) { outputs_->write_status(doc); },
                                                  std::chrono::milliseconds(250));
  if (!spec_.checkpoints.signing_key_file.empty()) {
    checkpoint_key_ = read_file(spec_.checkpoints.signing_key_file);
    if (checkpoint_key_.size() < 32)
      throw SpecError({"spec.checkpoints.signingKeyFile: " + spec_.checkpoints.signing_key_file +
                       " holds fewer than 32 bytes; a signing key needs at least 32 random bytes"});
  }

  // The ledger is signed with the aggregator's TLS key where it has one (its certificate chains to
  // the run's CA), else with an Ed25519 key kept beside the outputs.
  if (!spec_.transport.tls.key_file.empty()) {
    ledger_ = std::make_unique<LedgerWriter>(
        spec_.output_dir, SigningKey::from_pem(read_file(spec_.transport.tls.key_file), "spec.transport.tls.keyFile " + spec_.transport.tls.key_file),
        certificate_identity(read_file(spec_.transport.tls.cert_file)));
  } else {
    const SigningKey key = SigningKey::load_or_create_ed25519(spec_.output_dir + "/keys/ledger_ed25519.pem");
    ledger_ = std::make_unique<LedgerWriter>(spec_.output_dir, key,
                                             key_identity(key.public_key_pem(), "the aggregator has no TLS certificate"));
  }
  std::optional<LedgerHead> resumed_ledger;
  if (auto ckpt = find_latest_checkpoint(spec_.output_dir, checkpoint_key_)) {
    if (ckpt->state.spec_fingerprint != fingerprint_)
      throw std::runtime_error("outputDir " + spec_.output_dir +
                               " holds checkpoints of a run with a different spec (only spec.rounds may change on "
                               "resume); choose another outputDir or remove " + checkpoint_root(spec_.output_dir));
    load_parameter_set(policy_->parameters(), read_safetensors(ckpt->dir + "/model.safetensors"));
    strategy_->restore(ckpt->state.strategy, std::move(ckpt->state.strategy_tensors));
    if (download_steps_) download_steps_->restore(std::move(ckpt->state.download_residual));
    outputs_->restore(ckpt->state.history);
    start_round_ = ckpt->state.round + 1;
    resumed_ledger = ckpt->state.ledger;
    for (const auto& r : ckpt->state.history) {
      const nlohmann::json sets = r.value("eval_sets", nlohmann::json::object());
      for (const auto& [set, result] : sets.items()) last_losses_[set] = result.at("loss").get<double>();
      // The contribution scores' totals go on from the rounds already scored.
      for (const auto& c : r.value("clients", nlohmann::json::array())) {
        if (!c.contains("set_scores")) continue;
        SetScores scores(evaluation_->size());
        for (size_t i = 0; i < scores.size(); ++i) {
          const nlohmann::json s = c["set_scores"].value(evaluation_->name(i), nlohmann::json::object());
          if (s.contains("first_order")) scores[i].first_order = s["first_order"].get<double>();
          if (s.contains("leave_one_out")) scores[i].leave_one_out = s["leave_one_out"].get<double>();
        }
        add_scores(c.at("client").get<std::string>(), scores);
      }
    }
    log_info("run_resumed", {kv("checkpoint", ckpt->dir), kv("next_round", start_round_)});
  }
  set_global(to_parameter_set(policy_->trainable_parameters()), start_round_);
  if (start_round_ > 1 && global_->manifest.digest_hex() != find_latest_checkpoint(spec_.output_dir, checkpoint_key_)->state.global_digest)
    throw std::runtime_error("checkpoint: global parameters do not hash to the digest recorded with them");
  layout_ = global_->manifest;
  if (resumed_ledger) {
    ledger_->resume(*resumed_ledger);
  } else {
    // A fresh run, or one checkpointed before it kept a ledger: the chain starts here.
    ledger_->start(spec_.name, fingerprint_, global_->manifest.digest_hex(), start_round_);
  }
  current_round_ = start_round_ - 1;
  metrics_.rounds_total_planned.Set(spec_.rounds);
  metrics_.round.Set(current_round_);
  log_info("aggregator_ready", {kv("run", spec_.name), kv("policy", policy_->type()),
                                kv("trainable_parameters", global_->parameters.total_elements()),
                                kv("trainable_bytes", global_->parameters.total_bytes()), kv("frozen_digest", frozen_digest_),
                                kv("strategy", strategy_->name()),
                                kv("checkpoints", checkpoint_key_.empty() ? "unsigned" : "signed")});
}

Coordinator::~Coordinator() = default;

void Coordinator::set_global(ParameterSet parameters, int round) {
  auto g = std::make_shared<GlobalModel>();
  g->round = round;
  g->manifest = build_manifest(parameters);
  g->chunk_checksums = chunk_checksums(parameters, spec_.transport.chunk_bytes);
  g->parameters = std::move(parameters);
  std::lock_guard<std::mutex> lock(mu_);
  global_ = std::move(g);
}

bool Coordinator::alive(const Client& c, Clock::time_point now) const {
  return !c.session.empty() && !c.failed && now - c.last_seen < kHeartbeatTimeout;
}

std::vector<std::string> Coordinator::available_clients() {
  std::vector<std::string> out;
  const auto now = Clock::now();
  for (const auto& [name, c] : clients_)
    if (alive(c, now)) out.push_back(name);
  return out;
}

Coordinator::Client& Coordinator::client_for(const Caller& caller) {
  const auto it = sessions_.find(session_key(caller.session));
  Client* c = it == sessions_.end() ? nullptr : &clients_.at(it->second);
  if (!c || !constant_time_equal(c->session, caller.session))
    throw Refusal(Refusal::Kind::UnknownSession, "unknown session; register again");
  // A session id that leaked does not let another certificate holder act for the client.
  if (!c->fingerprint.empty() && (!caller.certificate || caller.certificate->fingerprint_sha256 != c->fingerprint))
    throw Refusal(Refusal::Kind::PermissionDenied, "session of client '" + c->name + "' used with another certificate");
  return *c;
}

std::string Coordinator::client_name(const Caller& caller) {
  std::lock_guard<std::mutex> lock(mu_);
  Client& c = client_for(caller);
  c.last_seen = Clock::now();
  return c.name;
}

void Coordinator::transfer_progressed(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  if (const auto it = clients_.find(client); it != clients_.end()) it->second.last_seen = Clock::now();
}

void Coordinator::record_resume(const std::string& client, int round, const std::string& direction, uint64_t bytes_kept) {
  metrics_.transfer_resumes.Add({{"direction", direction}}).Increment();
  log_info(direction + "_resumed", {kv("client", client), kv("round", round), kv("bytes_kept", bytes_kept)});
}

void Coordinator::refuse_registration(const std::string& reason, const std::string& name, const std::string& message,
                                      Refusal::Kind kind) {
  metrics_.registration_refused(reason);
  log_warn("registration_refused", {kv("client", bounded(name, 64)), kv("reason", reason), kv("detail", message)});
  throw Refusal(kind, message);
}

std::string Coordinator::register_client(const std::string& name, const std::string& policy_type,
                                         const std::string& frozen_digest, uint64_t dataset_samples,
                                         const std::optional<CertificateInfo>& certificate) {
  const std::string shown = bounded(name, 64);
  try {
    spec_.client(name);
  } catch (const std::out_of_range&) {
    refuse_registration("unknown_client", name, "client '" + shown + "' is not in spec.clients", Refusal::Kind::UnknownClient);
  }
  if (spec_.transport.tls.mutual) {
    // The name is the certificate's, not the request's: any holder of a certificate from the
    // run's CA could otherwise register as (and take over the session of) any client.
    if (!certificate)
      refuse_registration("no_certificate", name, "mutual TLS: the connection carries no client certificate",
                          Refusal::Kind::PermissionDenied);
    const auto named = client_named_by(*certificate, spec_.name);
    if (!named)
      refuse_registration("no_identity", name,
                          "certificate " + certificate->subject + " names no client of run '" + spec_.name + "' (URI SAN " +
                              client_identity_uri(spec_.name, "<client>") + ")",
                          Refusal::Kind::PermissionDenied);
    if (*named != name)
      refuse_registration("identity_mismatch", name,
                          "certificate is issued to client '" + *named + "', not '" + shown + "'", Refusal::Kind::PermissionDenied);
  }
  if (policy_type != policy_->type())
    refuse_registration("incompatible_policy", name,
                        "client '" + name + "' runs policy '" + bounded(policy_type, 64) + "', the run uses '" + policy_->type() + "'",
                        Refusal::Kind::Incompatible);
  if (frozen_digest != frozen_digest_)
    refuse_registration("frozen_digest", name,
                        "client '" + name + "': frozen parameters digest " + bounded(frozen_digest, 64) +
                            " differs from the aggregator's " + frozen_digest_,
                        Refusal::Kind::Incompatible);
  if (dataset_samples > kMaxDatasetSamples)
    refuse_registration("dataset_samples", name,
                        "client '" + name + "': dataset_samples " + std::to_string(dataset_samples) + " exceeds " +
                            std::to_string(kMaxDatasetSamples),
                        Refusal::Kind::InvalidArgument);
  std::lock_guard<std::mutex> lock(mu_);
  Client& c = clients_[name];
  const bool rejoined = !c.session.empty();
  if (rejoined) sessions_.erase(session_key(c.session));
  c.name = name;
  c.session = random_hex(16);
  sessions_[session_key(c.session)] = name;
  c.fingerprint = certificate && spec_.transport.tls.mutual ? certificate->fingerprint_sha256 : "";
  c.last_seen = Clock::now();
  c.failed = false;
  c.failure.clear();
  c.state = "idle";
  c.dataset_samples = dataset_samples;
  log_info(rejoined ? "client_rejoined" : "client_registered",
           {kv("client", name), kv("dataset_samples", dataset_samples),
            kv("certificate", certificate ? certificate->fingerprint_sha256.substr(0, 16) : "none")});
  publish_status();
  changed_.notify_all();
  return c.session;
}

Coordinator::HeartbeatAnswer Coordinator::heartbeat(const Caller& caller, const std::string& state, int round) {
  std::lock_guard<std::mutex> lock(mu_);
  Client& c = client_for(caller);
  if (!is_reportable_worker_state(state))
    throw Refusal(Refusal::Kind::InvalidArgument, "heartbeat state '" + bounded(state, 32) + "' is not one of idle, downloading, training, uploading");
  c.last_seen = Clock::now();
  if (state != c.state && c.state != "finished") {
    c.state = state;
    publish_status();
  }
  // Not taken as told: this answer can be lost on the way, a poll's FINISH is what drain() awaits.
  if (finished_) return {round != 0, true};
  if (round == 0) return {};
  if (asynchronous()) return {stop_ || abandon_buffered(c, round), false};
  if (stop_ || !open_ || open_->closed || open_->round != round) return {true, false};
  const auto it = open_->participants.find(c.name);
  return {it == open_->participants.end() || (it->second.status != "pending" && it->second.status != "aggregating"), false};
}

Instruction Coordinator::poll(const Caller& caller, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto until = Clock::now() + std::min(wait, std::chrono::milliseconds(5000));
  for (;;) {
    Client& c = client_for(caller);
    c.last_seen = Clock::now();
    Instruction ins;
    if (finished_) {
      ins.kind = Instruction::Kind::Finish;
      c.state = "finished";
      changed_.notify_all();
      return ins;
    }
    // Stopping is not the run's end: the workers keep waiting, find this aggregator gone and
    // register with the one that resumes the run (a pod deleted, a node drained).
    if (stop_) return ins;
    if (asynchronous()) {
      Instruction ins = poll_buffered(c);
      if (ins.kind == Instruction::Kind::Train) return ins;
    } else if (open_ && !open_->closed) {
      auto it = open_->participants.find(c.name);
      if (it != open_->participants.end() && it->second.status == "pending" && it->second.upload_ticket == 0) {
        ins.kind = Instruction::Kind::Train;
        ins.round = open_->round;
        ins.parameters_digest = global_->manifest.digest_hex();
        ins.local_steps = open_->plan.local_steps;
        ins.proximal_mu = open_->plan.proximal_mu;
        ins.clip_norm = open_->plan.clip_norm;
        ins.seed = client_round_seed(spec_.training.seed, open_->round, c.name);
        ins.deadline_ms = std::chrono::duration_cast<std::chrono::milliseconds>(open_->deadline - Clock::now()).count();
        return ins;
      }
    }
    if (changed_.wait_until(lock, until) == std::cv_status::timeout) return Instruction{};
  }
}

std::shared_ptr<const GlobalModel> Coordinator::global_for(const Caller& caller, int round, const std::string& digest,
                                                           const std::string& held) {
  std::lock_guard<std::mutex> lock(mu_);
  Client& c = client_for(caller);
  c.last_seen = Clock::now();
  if (asynchronous()) return buffered_global(c, round, digest);
  if (global_->round != round || global_->manifest.digest_hex() != digest)
    throw Refusal(Refusal::Kind::StaleRound, "round " + std::to_string(round) + " with parameters " + bounded(digest, 64) +
                                                 " is not the current round " + std::to_string(global_->round));
  if (!open_ || open_->closed || open_->round != round || !open_->participants.count(c.name))
    throw Refusal(Refusal::Kind::StaleRound, "client '" + c.name + "' is not selected for round " + std::to_string(round));
  if (download_steps_ && !held.empty() && held != digest)
    if (auto step = download_steps_->step_from(held)) return step;
  return global_;
}

Coordinator::CheckedClaims Coordinator::check_claims(const Caller& caller, const std::string& client, int round,
                                                     const std::string& base_digest, const SignedClaims& signed_claims) const {
  CheckedClaims out;
  out.evidence.claims = bounded(signed_claims.claims, 4096);
  out.evidence.signature = bounded(signed_claims.signature, 1024);
  if (!caller.certificate_pem.empty()) {
    out.evidence.identity = certificate_identity(caller.certificate_pem);
  } else {
    out.evidence.identity = key_identity(bounded(signed_claims.signing_key, 4096),
                                         spec_.transport.tls.enabled() ? "TLS without client certificates: a key the worker made itself"
                                                                       : "no TLS: a key the worker made itself");
  }
  if (signed_claims.signature.empty()) {
    out.rejection = "unsigned";
    out.message = "the update's claims are not signed";
    return out;
  }
  if (!verify_signature(identity_pem(out.evidence.identity), claims_message(signed_claims.claims), signed_claims.signature)) {
    out.rejection = "bad_signature";
    out.message = caller.certificate_pem.empty() ? "the claims' signature does not verify with the signing key sent with them"
                                                 : "the claims' signature does not verify with the client certificate";
    return out;
  }
  try {
    const UpdateClaims claims = UpdateClaims::parse(signed_claims.claims);
    std::string wrong;
    if (claims.run != spec_.name) wrong = "run '" + bounded(claims.run, 64) + "'";
    else if (claims.client != client) wrong = "client '" + bounded(claims.client, 64) + "'";
    else if (claims.round != round) wrong = "round " + std::to_string(claims.round);
    else if (claims.base_digest != base_digest) wrong = "another global";
    if (!wrong.empty()) {
      out.rejection = "claims_mismatch";
      out.message = "the signed claims are for " + wrong + ", not this upload";
    }
  } catch (const std::exception& e) {
    out.rejection = "claims_mismatch";
    out.message = e.what();
  }
  return out;
}

std::string Coordinator::claims_mismatch(const UpdateEvidence& evidence, const std::string& update_digest, const TrainReport& report) {
  const UpdateClaims claims = UpdateClaims::parse(evidence.claims);  // check_claims parsed it
  if (claims.update_digest != update_digest) return "the signed claims name update " + claims.update_digest + ", not " + update_digest;
  if (claims.samples != report.samples || claims.steps != report.steps || claims.loss != report.loss ||
      claims.policy_loss != report.policy_loss)
    return "the signed claims' samples, steps or losses are not the ones the upload reports";
  return "";
}

nlohmann::json Coordinator::ledger_entry(int round, const std::string& client, const UpdateEvidence& evidence,
                                         nlohmann::json decision) const {
  return {{"kind", "update"},
          {"run", spec_.name},
          {"round", round},
          {"client", client},
          {"identity", evidence.identity},
          {"claims", evidence.claims},
          {"worker_signature", base64_encode(evidence.signature, Base64::kStandard)},
          {"decision", std::move(decision)}};
}

UploadPermit Coordinator::begin_upload(const Caller& caller, int round, const std::string& base_digest, const SignedClaims& signed_claims) {
  std::lock_guard<std::mutex> lock(mu_);
  Client& c = client_for(caller);
  c.last_seen = Clock::now();
  CheckedClaims checked = check_claims(caller, c.name, round, base_digest, signed_claims);
  if (asynchronous()) return begin_buffered_upload(c, round, base_digest, std::move(checked));
  if (!open_ || open_->closed || open_->round != round)
    throw Refusal(Refusal::Kind::StaleRound, "round " + std::to_string(round) + " is not open");
  auto it = open_->participants.find(c.name);
  if (it == open_->participants.end())
    throw Refusal(Refusal::Kind::StaleRound, "client '" + c.name + "' was not selected for round " + std::to_string(round));
  Participant& p = it->second;
  if (p.status != "pending")
    throw Refusal(Refusal::Kind::StaleRound, "client '" + c.name + "' already " + p.status + " in round " + std::to_string(round));
  if (p.upload_ticket != 0)
    throw Refusal(Refusal::Kind::Busy, "client '" + c.name + "' is already uploading its update for round " + std::to_string(round));
  p.evidence = std::move(checked.evidence);
  const auto reject = [&](const std::string& reason, const std::string& message) {
    p.status = "rejected";
    p.reason = reason;
    ++rejections_[reason];
    metrics_.rejected(reason);
    log_warn("update_rejected", {kv("client", c.name), kv("round", round), kv("reason", reason), kv("detail", message)});
    publish_status();
    changed_.notify_all();
    return Refusal(Refusal::Kind::InvalidUpdate, message);
  };
  if (!checked.rejection.empty()) throw reject(checked.rejection, checked.message);
  if (base_digest != global_->manifest.digest_hex())
    throw reject("stale_base", "update was trained from " + bounded(base_digest, 64) + ", not this round's global parameters");
  p.upload_ticket = next_upload_ticket_++;
  log_info("upload_started", {kv("client", c.name), kv("round", round)});
  return {c.name, round, p.upload_ticket, open_->deadline, true};
}

Coordinator::Participant& Coordinator::pending_participant(const UploadPermit& permit) {
  if (!open_ || open_->round != permit.round) throw Refusal(Refusal::Kind::StaleRound, "round " + std::to_string(permit.round) + " ended");
  auto it = open_->participants.find(permit.client);
  if (it == open_->participants.end() || it->second.upload_ticket != permit.ticket)
    throw Refusal(Refusal::Kind::StaleRound, "the upload of client '" + permit.client + "' is no longer expected");
  return it->second;
}

void Coordinator::end_upload(const UploadPermit& permit) {
  std::lock_guard<std::mutex> lock(mu_);
  if (asynchronous()) {
    auto& task = clients_.at(permit.client).task;
    if (task && task->upload_ticket == permit.ticket && !task->aggregating) task->upload_ticket = 0;
    changed_.notify_all();
    return;
  }
  if (!open_ || open_->round != permit.round) return;
  auto it = open_->participants.find(permit.client);
  if (it != open_->participants.end() && it->second.upload_ticket == permit.ticket) it->second.upload_ticket = 0;
  changed_.notify_all();
}

ParameterSet Coordinator::decode_upload(const UploadPermit& permit, const ParameterSet& encoded, const Manifest& manifest) {
  std::shared_ptr<const GlobalModel> global;
  {
    std::lock_guard<std::mutex> lock(mu_);
    global = global_;
  }
  // begin_upload checked the base digest; the round cannot have moved on while the permit holds.
  if (global->round != permit.round)
    throw Refusal(Refusal::Kind::StaleRound, "round " + std::to_string(permit.round) + " closed while the update arrived");
  return apply_encoded_update(global->parameters, layout_, encoded, manifest, spec_.transport.compression.codec, aggregation_threads());
}

void Coordinator::submit(const UploadPermit& permit, ParameterSet update, const TrainReport& report, const std::string& update_digest,
                         uint64_t bytes_uploaded, double upload_seconds) {
  if (asynchronous()) return submit_buffered(permit, std::move(update), report, update_digest, bytes_uploaded, upload_seconds);
  OpenRound* r = nullptr;
  double weight = 0;
  std::shared_ptr<const GlobalModel> base;
  {
    std::lock_guard<std::mutex> lock(mu_);
    base = global_;
    Participant& p = pending_participant(permit);
    if (open_->closed || p.status != "pending")
      throw Refusal(Refusal::Kind::StaleRound, "round " + std::to_string(permit.round) + " closed while the update arrived");
    auto reject = [&](const std::string& reason, const std::string& message) {
      p.status = "rejected";
      p.reason = reason;
      p.upload_ticket = 0;
      ++rejections_[reason];
      metrics_.rejected(reason);
      log_warn("update_rejected", {kv("client", permit.client), kv("round", permit.round), kv("reason", reason), kv("detail", message)});
      publish_status();
      changed_.notify_all();
      return Refusal(Refusal::Kind::InvalidUpdate, message);
    };
    if (const std::string wrong = claims_mismatch(p.evidence, update_digest, report); !wrong.empty()) throw reject("claims_mismatch", wrong);
    if (report.samples == 0 || report.steps == 0 || p.weight <= 0) throw reject("no_samples", "update reports no trained samples");
    if (!std::isfinite(report.loss)) throw reject("non_finite", "reported loss is not finite");
    const UpdateCheck check = check_update(update, global_->parameters, spec_.strategy.max_update_norm);
    if (!check.ok()) throw reject(check.reason, check.message);
    const double norm = check.norm;
    if (const auto limit = open_->aggregation->accepted_norm_limit(); limit && norm > *limit)
      throw reject("above_clip_norm", "update norm " + std::to_string(norm) + " is above the clip norm " +
                                          std::to_string(open_->plan.clip_norm) + " the worker was told to clip to");
    p.status = "aggregating";
    p.report = report;
    p.bytes_uploaded = bytes_uploaded;
    p.upload_seconds = upload_seconds;
    p.update_norm = norm;
    weight = p.weight;
    r = open_.get();
    ++r->in_flight;
  }
  std::string aggregation_error;
  try {
    // Folding 100M parameters takes a while: do it outside the main lock so heartbeats and
    // other clients' calls go on; one aggregation at a time.
    std::lock_guard<std::mutex> agg(aggregation_mu_);
    r->aggregation->note_reported_norm(permit.client, report.update_norm);
    r->aggregation->add(permit.client, update, weight);
  } catch (const std::exception& e) {
    aggregation_error = e.what();
  }
  // The round's global cannot change while it is open.
  std::vector<double> descent;
  if (r->eval_gradients)
    for (const auto& gradient : *r->eval_gradients) descent.push_back(-dot_with_delta(gradient, update, base->parameters));
  std::lock_guard<std::mutex> lock(mu_);
  --r->in_flight;
  Participant& p = r->participants.at(permit.client);
  p.descent = std::move(descent);
  if (!aggregation_error.empty()) {
    // The aggregation may hold part of this update: the round cannot use it any more.
    p.status = "rejected";
    p.reason = "aggregation_failed";
    p.upload_ticket = 0;
    r->closed = true;
    r->aggregation_failed = true;
    log_error("aggregation_failed", {kv("client", permit.client), kv("round", permit.round), kv("error", aggregation_error)});
    changed_.notify_all();
    throw Refusal(Refusal::Kind::InvalidUpdate, "aggregation failed: " + aggregation_error);
  }
  p.status = "accepted";
  p.upload_ticket = 0;
  metrics_.updates_accepted.Increment();
  metrics_.transferred("upload", static_cast<double>(bytes_uploaded), upload_seconds);
  Client& c = clients_.at(permit.client);
  c.last_loss = report.loss;
  c.state = "idle";
  ++c.rounds_accepted;
  log_info("update_accepted", {kv("client", permit.client), kv("round", permit.round), kv("weight", weight),
                               kv("loss", report.loss), kv("update_norm", p.update_norm), kv("bytes", bytes_uploaded)});
  publish_status();
  changed_.notify_all();
}

void Coordinator::keep_upload(const UploadPermit& permit, const ParameterSet& uploaded, const Manifest& manifest) const {
  if (!keeps_uploads() || asynchronous()) return;
  std::map<std::string, std::string> metadata;
  if (manifest.encoding) {
    metadata[kKeptCodecKey] = manifest.encoding->codec;
    metadata[kKeptDecodedDigestKey] = to_hex(manifest.encoding->decoded_digest);
  }
  write_file_atomic(kept_round_dir(spec_.output_dir, permit.round) + "/clients/" + permit.client + ".safetensors",
                    encode_safetensors(uploaded, metadata));
}

void Coordinator::keep_round(int round, const std::vector<std::string>& folded) const {
  if (!keeps_uploads()) return;
  const std::string dir = kept_round_dir(spec_.output_dir, round);
  std::filesystem::create_directories(dir + "/clients");
  for (const auto& e : std::filesystem::directory_iterator(dir + "/clients")) {
    const std::string client = e.path().stem().string();
    if (std::find(folded.begin(), folded.end(), client) == folded.end()) std::filesystem::remove(e.path());
  }
  write_file_atomic(dir + "/base.safetensors", encode_safetensors(global_->parameters, {}));
}

void Coordinator::record_rejection(const UploadPermit& permit, const std::string& reason, const std::string& message) {
  std::lock_guard<std::mutex> lock(mu_);
  ++rejections_[reason];
  metrics_.rejected(reason);
  if (open_ && open_->round == permit.round) {
    auto it = open_->participants.find(permit.client);
    if (it != open_->participants.end()) ++it->second.transfer_rejections;
  }
  log_warn("upload_rejected", {kv("client", permit.client), kv("round", permit.round), kv("reason", reason), kv("detail", message)});
  publish_status();
}

void Coordinator::report_failure(const Caller& caller, int round, const std::string& reason_sent, bool fatal) {
  const std::string reason = bounded(reason_sent, kMaxReasonBytes);
  std::lock_guard<std::mutex> lock(mu_);
  Client& c = client_for(caller);
  if (asynchronous() && c.task && c.task->base_round == round && c.task->upload_ticket == 0) c.task.reset();
  if (open_ && open_->round == round) {
    auto it = open_->participants.find(c.name);
    if (it != open_->participants.end() && it->second.status == "pending") {
      it->second.status = "failed";
      it->second.reason = reason;
    }
  }
  metrics_.client_failures.Increment();
  if (fatal) {
    c.failed = true;
    c.failure = reason;
    c.state = "failed";
  }
  log_error("client_failed", {kv("client", c.name), kv("round", round), kv("fatal", fatal), kv("reason", reason)});
  publish_status();
  changed_.notify_all();
}

void Coordinator::drain(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!finished_) return;  // stopped: no worker is told to finish, so none will be
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    bool pending = false;
    const auto now = Clock::now();
    for (const auto& [name, c] : clients_) pending |= alive(c, now) && c.state != "finished";
    if (!pending || now >= deadline) return;
    changed_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(100)));
  }
}

void Coordinator::request_stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = true;
  changed_.notify_all();
}

std::string Coordinator::wait_for_quorum(int round, std::unique_lock<std::mutex>& lock) {
  if (wait_for_available(spec_.strategy.min_available_clients, lock)) return "";
  if (stop_) return "stopped";
  return "round " + std::to_string(round) + ": fewer than " + std::to_string(spec_.strategy.min_available_clients) +
         " clients available within startTimeoutSeconds (" + std::to_string(available_clients().size()) + " up)";
}

bool Coordinator::wait_for_available(int count, std::unique_lock<std::mutex>& lock) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(spec_.strategy.start_timeout_seconds));
  while (static_cast<int>(available_clients().size()) < count) {
    if (stop_ || Clock::now() >= deadline) return false;
    loop_watchdog_.beat();
    changed_.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(200)));
  }
  return true;
}

void Coordinator::apply_decisions(OpenRound& round, const AggregationResult& result) {
  for (const UpdateDecision& d : result.decisions) {
    auto it = round.participants.find(d.client);
    if (it == round.participants.end()) throw std::logic_error("the rule decided on '" + d.client + "', who is not in the round");
    Participant& p = it->second;
    if (d.outcome == "clipped") {
      p.clip_scale = d.scale;
      p.clip_reason = d.reason;
      metrics_.updates_clipped.Increment();
      log_info("update_clipped", {kv("client", d.client), kv("round", round.round), kv("scale", d.scale), kv("detail", d.reason)});
    } else if (d.outcome == "discarded") {
      p.status = "discarded";
      p.reason = d.reason;
      p.clip_scale = d.scale;
      const std::string rule = to_string(spec_.strategy.aggregation.rule);
      ++discards_[rule];
      metrics_.updates_discarded.Add({{"rule", rule}}).Increment();
      Client& c = clients_.at(d.client);
      --c.rounds_accepted;  // counted when it arrived; the rule left it out
      log_warn("update_discarded", {kv("client", d.client), kv("round", round.round), kv("rule", rule), kv("detail", d.reason)});
    }
  }
}

nlohmann::json Coordinator::participant_json(const std::string& name, const Participant& p) const {
  nlohmann::json j = {{"client", name}, {"status", p.status}};
  if (!p.reason.empty()) j["reason"] = p.reason;
  if (p.transfer_rejections) j["transfer_rejections"] = p.transfer_rejections;
  if (!p.clip_reason.empty()) j["clip_reason"] = p.clip_reason;
  if (!p.scores.empty()) {
    // The first set's under their own names: the server loss's, as the run's other outputs show it.
    if (p.scores[0].first_order) j["score_first_order"] = *p.scores[0].first_order;
    if (p.scores[0].leave_one_out) j["score_leave_one_out"] = *p.scores[0].leave_one_out;
    j["set_scores"] = scores_by_set(p.scores);
  }
  if (p.status == "accepted" || p.status == "discarded") {
    j.update(report_json(p.report));
    add_update_fields(j, p.weight, p.update_norm, p.clip_scale, p.bytes_uploaded, p.upload_seconds);
    if (const CodecSettings& codec = spec_.transport.compression.codec; codec.active()) {
      j["codec"] = codec.describe();
      j["bytes_decoded"] = layout_.total_bytes();  // the float32 update the encoding stands for
    }
  }
  return j;
}

void Coordinator::publish_status() {
  nlohmann::json clients = nlohmann::json::object();
  const auto now = Clock::now();
  int ready = 0;
  for (const auto& [name, c] : clients_) {
    const bool up = alive(c, now);
    ready += up;
    nlohmann::json j = {{"state", c.failed ? "failed" : (up ? c.state : "unreachable")}, {"rounds_accepted", c.rounds_accepted}};
    if (c.last_loss) j["last_loss"] = *c.last_loss;
    if (const auto s = score_totals_.find(name); s != score_totals_.end()) {
      const nlohmann::json by_set = scores_by_set(s->second);
      j["contribution_score"] = by_set.at(evaluation_->name(0));
      j["contribution_score_by_set"] = by_set;
    }
    if (!c.failure.empty()) j["failure"] = c.failure;
    if (open_ && !open_->closed) {
      auto it = open_->participants.find(name);
      if (it != open_->participants.end()) j["round_status"] = it->second.status;
    }
    if (c.task) j["task_round"] = c.task->base_round;
    j["last_seen_unix"] = unix_now() - std::chrono::duration<double>(now - c.last_seen).count();
    clients[name] = j;
  }
  // A remote client is listed before it joins, so that whoever waits for it sees that it has not.
  for (const auto& c : spec_.clients) {
    if (!c.remote) continue;
    if (!clients.contains(c.name)) clients[c.name] = {{"state", "not_joined"}, {"rounds_accepted", 0}};
    clients[c.name]["remote"] = true;
  }
  metrics_.clients_connected.Set(ready);
  nlohmann::json status = {{"run", spec_.name},
                           {"phase", phase_},
                           {"round", current_round_},
                           {"rounds", spec_.rounds},
                           {"ready_clients", ready},
                           {"clients", clients},
                           {"rejected_updates", rejections_},
                           {"discarded_updates", discards_},
                           {"updated_at", unix_now()}};
  if (const auto loss = server_loss()) status["last_server_eval_loss"] = *loss;
  if (!last_losses_.empty()) status["evaluation_losses"] = last_losses_;
  if (!privacy_.is_null()) {
    status["privacy_epsilon"] = privacy_.at("epsilon");
    status["privacy_delta"] = privacy_.at("delta");
  }
  if (!message_.empty()) status["message"] = message_;
  std::string document = status.dump();
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    last_status_ = document;
  }
  status_writer_->publish(std::move(document));
}

std::string Coordinator::status_json() const {
  std::lock_guard<std::mutex> lock(status_mu_);
  return last_status_;
}

bool Coordinator::evaluation_due(int round) const {
  return round == 0 || round % spec_.evaluation.every_rounds == 0 || round == spec_.rounds;
}

std::optional<double> Coordinator::server_loss() const {
  const auto it = last_losses_.find(evaluation_->name(0));
  return it == last_losses_.end() ? std::nullopt : std::optional<double>(it->second);
}

std::optional<std::vector<SetResult>> Coordinator::evaluate_if_due(int round) {
  if (!evaluation_due(round)) return std::nullopt;
  std::vector<SetResult> results = evaluation_->evaluate(*policy_);
  strategy_->on_evaluation(round, results[0].result.loss);
  metrics_.server_eval_loss.Set(results[0].result.loss);
  for (const auto& [set, r] : results) {
    metrics_.evaluation_set_loss.Add({{"set", set}}).Set(r.loss);
    log_info("server_evaluated", {kv("round", round), kv("set", set), kv("loss", r.loss), kv("batches", r.batches),
                                  kv("samples", r.samples), kv("seconds", r.seconds)});
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [set, r] : results) last_losses_[set] = r.loss;
  return results;
}

nlohmann::json Coordinator::evaluation_fields(const std::vector<SetResult>& results) {
  const EvalResult& server = results.at(0).result;
  nlohmann::json fields = {{"server_eval_loss", server.loss},
                           {"eval_batches", server.batches},
                           {"eval_samples", server.samples},
                           {"eval_seconds", server.seconds},
                           {"eval_sets", nlohmann::json::object()}};
  for (const auto& [set, r] : results)
    fields["eval_sets"][set] = {{"loss", r.loss}, {"batches", r.batches}, {"samples", r.samples}, {"seconds", r.seconds}};
  return fields;
}

void Coordinator::checkpoint(int round) {
  if (round % spec_.checkpoints.every_rounds != 0 && round != spec_.rounds) return;
  AggregatorState state;
  state.round = round;
  state.spec_fingerprint = fingerprint_;
  state.global_digest = global_->manifest.digest_hex();
  state.strategy = strategy_->state();
  state.strategy_tensors = strategy_->state_tensors();
  if (download_steps_) state.download_residual = download_steps_->residual();
  state.ledger = ledger_->head();
  state.history = outputs_->history();
  const std::string dir = write_checkpoint(spec_.output_dir, *policy_, state, spec_.checkpoints.keep_last, checkpoint_key_);
  metrics_.checkpoint_timestamp.Set(unix_now());
  metrics_.checkpoint_bytes.Set(static_cast<double>(std::filesystem::file_size(dir + "/model.safetensors")));
  log_info("checkpoint_written", {kv("round", round), kv("dir", dir)});
}

void Coordinator::run_round_attempt(int round, int attempt, std::shared_ptr<const std::vector<ParameterSet>> eval_gradients,
                                    std::unique_lock<std::mutex>& lock) {
  auto r = std::make_unique<OpenRound>();
  r->round = round;
  r->attempt = attempt;
  r->eval_gradients = std::move(eval_gradients);
  r->plan = strategy_->configure_round(round, attempt, available_clients());
  r->opened = Clock::now();
  r->deadline = r->opened + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(spec_.strategy.round_timeout_seconds));
  r->aggregation = strategy_->begin_aggregation(std::shared_ptr<const ParameterSet>(global_, &global_->parameters));
  // The weight of an update is what the server asked for (local steps x batch size, fewer when
  // the client's dataset is smaller), as a share of the round's total: a client's own report of
  // how much it trained never moves the average.
  const uint64_t asked = static_cast<uint64_t>(r->plan.local_steps) * static_cast<uint64_t>(spec_.training.batch_size);
  double planned_total = 0;
  for (const auto& name : r->plan.clients) {
    const uint64_t samples = std::min<uint64_t>(asked, clients_.at(name).dataset_samples);
    r->participants[name].weight = static_cast<double>(samples);
    planned_total += static_cast<double>(samples);
  }
  for (auto& [name, p] : r->participants) p.weight = planned_total > 0 ? p.weight / planned_total : 0;
  std::string selected;
  for (const auto& n : r->plan.clients) selected += (selected.empty() ? "" : ",") + n;
  log_info("round_started", {kv("round", round), kv("attempt", attempt), kv("clients", selected),
                             kv("proximal_mu", r->plan.proximal_mu), kv("local_steps", r->plan.local_steps),
                             kv("clip_norm", r->plan.clip_norm)});
  metrics_.round.Set(round);
  metrics_.clients_selected.Set(static_cast<double>(r->plan.clients.size()));
  open_ = std::move(r);
  publish_status();
  changed_.notify_all();

  // The round ends when every participant has answered or dropped out, or at the deadline.
  for (;;) {
    const auto now = Clock::now();
    bool waiting = false;
    for (auto& [name, p] : open_->participants) {
      if (p.status == "aggregating") waiting = true;
      if (p.status != "pending") continue;
      const Client& c = clients_.at(name);
      if (c.failed) {
        p.status = "failed";
        p.reason = c.failure;
      } else if (!alive(c, now)) {
        p.status = "dropped";
        p.reason = "no heartbeat for " + std::to_string(kHeartbeatTimeout.count() / 1000) + "s";
        metrics_.dropouts.Increment();
        log_warn("client_dropped", {kv("client", name), kv("round", round)});
      } else {
        waiting = true;
      }
    }
    if (!waiting || stop_ || open_->aggregation_failed) break;
    if (now >= open_->deadline) {
      for (auto& [name, p] : open_->participants)
        if (p.status == "pending") {
          p.status = "timed_out";
          p.reason = "no update within roundTimeoutSeconds";
          metrics_.stragglers.Increment();
          log_warn("client_straggled", {kv("client", name), kv("round", round)});
        }
      if (open_->in_flight == 0) break;
    }
    // Past the deadline the loop only waits for updates being folded in, which end on their own:
    // no beat then, so that a fold that hangs shows as a stall.
    if (now < open_->deadline) loop_watchdog_.beat();
    changed_.wait_until(lock, std::min(open_->deadline, now + std::chrono::milliseconds(200)));
  }
  open_->closed = true;
  // Submits already folding in finish before the aggregation is read.
  while (open_->in_flight > 0) changed_.wait_for(lock, std::chrono::milliseconds(50));
}

void Coordinator::add_scores(const std::string& client, const SetScores& round_scores) {
  SetScores& totals = score_totals_[client];
  totals.resize(evaluation_->size());
  const auto add = [&](std::optional<double>& total, const std::optional<double>& score, const char* estimate, size_t set) {
    if (!score) return;
    total = total.value_or(0) + *score;
    metrics_.contribution_score.Add({{"client", client}, {"estimate", estimate}, {"set", evaluation_->name(set)}}).Set(*total);
  };
  for (size_t i = 0; i < round_scores.size(); ++i) {
    add(totals[i].first_order, round_scores[i].first_order, "first_order", i);
    add(totals[i].leave_one_out, round_scores[i].leave_one_out, "leave_one_out", i);
  }
}

nlohmann::json Coordinator::scores_by_set(const SetScores& scores) const {
  nlohmann::json by_set = nlohmann::json::object();
  for (size_t i = 0; i < scores.size(); ++i) {
    nlohmann::json& s = by_set[evaluation_->name(i)] = nlohmann::json::object();
    if (scores[i].first_order) s["first_order"] = *scores[i].first_order;
    if (scores[i].leave_one_out) s["leave_one_out"] = *scores[i].leave_one_out;
  }
  return by_set;
}

void Coordinator::score_round(int round, OpenRound& finished, const ParameterSet& aggregate) {
  const ContributionScoresSpec& scores = spec_.evaluation.contribution_scores;
  std::vector<std::string> accepted;
  double accepted_weight = 0;
  for (const auto& [name, p] : finished.participants)
    if (p.status == "accepted") accepted.push_back(name), accepted_weight += p.weight;
  const size_t sets = evaluation_->size();
  std::map<std::string, SetScores> round_scores;
  for (const auto& name : accepted) round_scores[name].resize(sets);
  if (scores.first_order)
    for (const auto& name : accepted) {
      const Participant& p = finished.participants.at(name);
      for (size_t i = 0; i < p.descent.size(); ++i) round_scores[name][i].first_order = p.weight / accepted_weight * p.descent[i];
    }
  if (scores.leave_one_out && accepted.size() > 1) {
    const auto base = std::shared_ptr<const ParameterSet>(global_, &global_->parameters);
    const auto losses_of = [&](const ParameterSet& parameters) {
      load_parameter_set(policy_->trainable_parameters(), parameters);
      std::vector<double> losses;
      for (const auto& r : evaluation_->evaluate(*policy_)) losses.push_back(r.result.loss);
      return losses;
    };
    const std::vector<double> with_all = losses_of(aggregate);
    const std::string dir = kept_round_dir(spec_.output_dir, round) + "/clients/";
    const auto kept = [&](const std::string& name) {
      return read_kept_update(dir + name + ".safetensors", *base, spec_.transport.compression.codec, nullptr);
    };
    // Under the mean (clipped, if at all, to a norm that does not depend on who took part), the
    // aggregate without a client follows from the aggregate and that client's update alone.
    const bool mean_closed_form = spec_.strategy.aggregation.rule == AggregationRule::Mean && spec_.strategy.clipping.quantile == 0;
    for (const auto& left_out : accepted) {
      const Participant& out = finished.participants.at(left_out);
      ParameterSet without_it;
      if (mean_closed_form) {
        without_it = mean_without(aggregate, accepted_weight, *base, kept(left_out), out.weight, out.clip_scale);
      } else {
        // The round's rule again, over every update it folded but this one.
        auto aggregation = strategy_->begin_aggregation(base);
        for (const auto& [name, p] : finished.participants)
          if (name != left_out && (p.status == "accepted" || p.status == "discarded")) aggregation->add(name, kept(name), p.weight);
        without_it = aggregation->finish().parameters;
      }
      const std::vector<double> without = losses_of(without_it);
      for (size_t i = 0; i < sets; ++i) round_scores[left_out][i].leave_one_out = without[i] - with_all[i];
      loop_watchdog_.beat();
    }
    load_parameter_set(policy_->trainable_parameters(), global_->parameters);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, scores_of] : round_scores) {
    const bool any = std::any_of(scores_of.begin(), scores_of.end(), [](const ContributionScore& s) { return s.first_order || s.leave_one_out; });
    if (!any) continue;  // a lone update has no leave-one-out difference
    finished.participants.at(name).scores = scores_of;
    add_scores(name, scores_of);
  }
  log_info("round_scored", {kv("round", round), kv("clients", accepted.size()), kv("first_order", scores.first_order),
                            kv("leave_one_out", scores.leave_one_out && accepted.size() > 1)});
}

std::string Coordinator::complete_round(int round, ParameterSet aggregate, nlohmann::json record, std::vector<nlohmann::json> updates,
                                        Clock::time_point t0, size_t accepted, size_t discarded) {
  ParameterSet next = strategy_->server_step(global_->parameters, std::move(aggregate));
  const nlohmann::json privacy = strategy_->privacy_report();
  // A server step on a finite, bounded pseudo-gradient stays finite (tau > 0 bounds Adam's and
  // Yogi's); should it not, the run stops before a bad global is served or saved.
  std::string bad;
  if (!all_finite(next, bad))
    return "round " + std::to_string(round) + ": the server optimizer's step made tensor '" + bad + "' non-finite";
  if (download_steps_) next = download_steps_->advance(*global_, next, round + 1);
  std::string unused;
  const double update_norm = distance_from(next, global_->parameters, unused);
  load_parameter_set(policy_->trainable_parameters(), next);
  set_global(std::move(next), round + 1);
  const auto eval = evaluate_if_due(round);
  record["duration_seconds"] = seconds_since(t0);
  record["clients_accepted"] = accepted;
  record["clients_discarded"] = discarded;
  record["aggregation_rule"] = to_string(spec_.strategy.aggregation.rule);
  record["global_update_norm"] = update_norm;
  record["global_digest"] = global_->manifest.digest_hex();
  if (eval) record.update(evaluation_fields(*eval));
  else record["server_eval_loss"] = nullptr;
  if (!privacy.is_null()) {
    record["privacy"] = privacy;
    metrics_.privacy_epsilon.Set(privacy.at("epsilon").get<double>());
  }
  outputs_->append_round(record);
  // The round's entries are on disk before the checkpoint that records the chain's head.
  for (auto& entry : updates) ledger_->append(std::move(entry));
  // The record's evaluation, every set's included (a sponsor's loss is signed and chained with the
  // round it measured), without the timings, which are no part of the result.
  nlohmann::json eval_json;
  if (eval) {
    eval_json = {{"loss", record["server_eval_loss"]}, {"batches", record["eval_batches"]}, {"samples", record["eval_samples"]},
                 {"sets", record["eval_sets"]}};
    for (auto& [set, r] : eval_json["sets"].items()) r.erase("seconds");
  }
  const std::string eval_text = eval_json.dump();
  ledger_->append({{"kind", "round"},
                   {"run", spec_.name},
                   {"round", round},
                   {"global_digest", global_->manifest.digest_hex()},
                   {"eval", eval_json},
                   {"eval_digest", to_hex(sha256(eval_text.data(), eval_text.size()))},
                   {"accepted", accepted},
                   {"discarded", discarded}});
  ledger_->commit();
  checkpoint(round);
  metrics_.rounds_completed.Increment();
  metrics_.round_duration.Observe(seconds_since(t0));
  log_info("round_completed", {kv("round", round), kv("accepted", accepted), kv("discarded", discarded),
                               kv("server_eval_loss", eval ? std::to_string(eval->at(0).result.loss) : "-"), kv("seconds", seconds_since(t0))});
  std::lock_guard<std::mutex> status_lock(mu_);
  privacy_ = privacy;
  publish_status();
  return "";
}

int Coordinator::run_synchronous(const std::function<int(const std::string&, int)>& fail) {
  for (int round = start_round_; round <= spec_.rounds; ++round) {
    const ContributionScoresSpec& scores = spec_.evaluation.contribution_scores;
    const bool scored = scores.any() && evaluation_due(round);
    // Before the round opens (a backward pass over each set's evaluation batches), outside the lock.
    std::shared_ptr<const std::vector<ParameterSet>> eval_gradients;
    if (scored && scores.first_order) eval_gradients = std::make_shared<const std::vector<ParameterSet>>(evaluation_->loss_gradients(*policy_));
    std::unique_lock<std::mutex> lock(mu_);
    if (const std::string spent = strategy_->budget_exhausted(); !spent.empty()) {
      // The run ends as planned work would have, with what it has: every completed round is
      // checkpointed, and the reason is the status's message.
      log_warn("privacy_budget_spent", {kv("round", round), kv("detail", spent)});
      message_ = "ended after round " + std::to_string(round - 1) + ": " + spent;
      rounds_run_ = round - 1;
      break;
    }
    current_round_ = round;
    double started = 0;  // when the round opened, once enough clients were up
    Clock::time_point t0;
    int attempt = 1;
    nlohmann::json failed_attempts = nlohmann::json::array();
    std::vector<nlohmann::json> ledger_entries;
    std::unique_ptr<OpenRound> finished_round;
    ParameterSet next;
    double aggregation_seconds = 0;
    std::optional<double> clip_norm;
    size_t discarded = 0;
    for (;; ++attempt) {
      if (const std::string why = wait_for_quorum(round, lock); !why.empty()) {
        lock.unlock();
        return fail(why, kExitRunFailed);
      }
      if (attempt == 1) started = unix_now(), t0 = Clock::now();
      run_round_attempt(round, attempt, eval_gradients, lock);
      if (stop_) {
        lock.unlock();
        return fail("stopped", kExitError);
      }
      std::string why_failed;
      if (open_->aggregation_failed) {
        why_failed = "aggregation_failed";
      } else if (static_cast<int>(open_->aggregation->count()) >= spec_.strategy.min_fit_clients || spec_.strategy.privacy.enabled) {
        // Under privacy every round releases what its Poisson sample sent, even nothing (noise
        // alone): repeating a round until enough arrived would make the release depend on who took part.
        finished_round = std::move(open_);
        lock.unlock();
        const auto agg_start = Clock::now();
        AggregationResult result = finished_round->aggregation->finish();
        next = std::move(result.parameters);
        aggregation_seconds = seconds_since(agg_start);
        metrics_.aggregation_duration.Observe(aggregation_seconds);
        std::string bad;
        const bool finite = all_finite(next, bad);
        lock.lock();
        // Bounded, finite updates cannot average to a non-finite model; if a strategy still
        // produced one it must never become the global model or a checkpoint.
        if (finite) {
          apply_decisions(*finished_round, result);
          clip_norm = result.clip_norm;
          for (const auto& d : result.decisions) discarded += d.outcome == "discarded";
          break;
        }
        why_failed = "non_finite_aggregate";
        log_error("aggregate_refused", {kv("round", round), kv("attempt", attempt), kv("tensor", bad)});
        open_ = std::move(finished_round);
      } else {
        why_failed = "quorum_lost";
        log_warn("quorum_lost", {kv("round", round), kv("attempt", attempt), kv("accepted", open_->aggregation->count()),
                                 kv("needed", spec_.strategy.min_fit_clients)});
      }
      nlohmann::json lost = {{"attempt", attempt}, {"reason", why_failed}, {"clients", nlohmann::json::array()}};
      for (const auto& [name, p] : open_->participants) {
        lost["clients"].push_back(participant_json(name, p));
        if (p.evidence.identity.is_null()) continue;
        nlohmann::json entry = ledger_entry(round, name, p.evidence, participant_json(name, p));
        entry["attempt"] = attempt;
        entry["attempt_outcome"] = why_failed;
        ledger_entries.push_back(std::move(entry));
      }
      failed_attempts.push_back(lost);
      if (attempt >= spec_.strategy.max_round_attempts) {
        lock.unlock();
        return fail(why_failed == "quorum_lost"
                        ? "round " + std::to_string(round) + ": quorum of " + std::to_string(spec_.strategy.min_fit_clients) +
                              " updates not reached in " + std::to_string(attempt) + " attempts"
                        : "round " + std::to_string(round) + ": the aggregate was not finite in " + std::to_string(attempt) + " attempts",
                    kExitRunFailed);
      }
    }
    lock.unlock();
    nlohmann::json record = {{"round", round},
                             {"attempts", attempt},
                             {"started_at", started},
                             {"proximal_mu", finished_round->plan.proximal_mu},
                             {"clients_selected", finished_round->plan.clients.size()},
                             {"aggregation_seconds", aggregation_seconds}};
    if (clip_norm) record["clip_norm"] = *clip_norm;
    if (!failed_attempts.empty()) record["failed_attempts"] = failed_attempts;
    record["clients"] = nlohmann::json::array();
    std::vector<std::string> folded;
    for (const auto& [name, p] : finished_round->participants)
      if (p.status == "accepted" || p.status == "discarded") folded.push_back(name);
    keep_round(round, folded);
    if (scored) score_round(round, *finished_round, next);
    if (!spec_.checkpoints.keep_updates) std::filesystem::remove_all(kept_round_dir(spec_.output_dir, round));
    for (const auto& [name, p] : finished_round->participants) {
      record["clients"].push_back(participant_json(name, p));
      if (p.evidence.identity.is_null()) continue;
      nlohmann::json entry = ledger_entry(round, name, p.evidence, participant_json(name, p));
      entry["attempt"] = attempt;
      ledger_entries.push_back(std::move(entry));
    }
    const std::string failure = complete_round(round, std::move(next), std::move(record), std::move(ledger_entries), t0,
                                               finished_round->aggregation->count() - discarded, discarded);
    if (!failure.empty()) return fail(failure, kExitError);
  }
  return kExitOk;
}

int Coordinator::run() {
  const auto fail = [&](const std::string& why, int exit_code) {
    log_error("run_failed", {kv("reason", why)});
    {
      std::lock_guard<std::mutex> lock(mu_);
      phase_ = "Failed";
      message_ = why;
      finished_ = !stop_;  // workers polling now are told to finish, unless only this process stops
      publish_status();
      changed_.notify_all();
    }
    status_writer_->flush();
    return exit_code;
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    phase_ = "Running";
    publish_status();
  }
  loop_watchdog_.arm("the round loop");
  struct Disarm {
    Watchdog& watchdog;
    ~Disarm() { watchdog.disarm(); }
  } disarm{loop_watchdog_};
  try {
    if (start_round_ == 1) {
      nlohmann::json record = {{"round", 0}};
      record.update(evaluation_fields(*evaluate_if_due(0)));
      record["global_digest"] = global_->manifest.digest_hex();
      record["clients"] = nlohmann::json::array();
      outputs_->append_round(record);
    }
    const int rc = asynchronous() ? run_buffered(fail) : run_synchronous(fail);
    if (rc != kExitOk) return rc;
  } catch (const std::exception& e) {
    return fail(e.what(), kExitError);
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    finished_ = true;
    phase_ = "Succeeded";
    publish_status();
    changed_.notify_all();
  }
  status_writer_->flush();
  log_info("run_succeeded", {kv("rounds", rounds_run_.value_or(spec_.rounds)), kv("server_eval_loss", server_loss().value_or(NAN)),
                             kv("outputs", spec_.output_dir)});
  return 0;
}

}  // namespace zk0
