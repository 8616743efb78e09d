// Asynchronous rounds: FedBuff (Nguyen et al. 2022), spec.strategy.asynchronous.
//
// There is no round that waits for everyone. While a buffer is open, every idle client (up to
// fractionFit of those available) is handed a task: train from the newest global. Its update may
// arrive versions later; it is then `staleness` versions behind, rejected beyond maxStaleness, and
// otherwise joins the open buffer as the buffer's global plus its own delta scaled by the
// staleness weight (core/aggregation/buffered.h), with weight 1/minFitClients. The rule then runs
// over the buffer as over a synchronous round, and complete_round advances the global version.
//
// Nothing accepted is lost to a crash: each update is written to outputDir/buffer/round-N/
// (fsync, signed with the checkpoint key when there is one) before the client hears it was
// accepted, a buffer only opens once the previous version's checkpoint is written, and a
// restarted aggregator folds the files of its open buffer back in.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "aggregator/coordinator.h"
#include "aggregator/round_records.h"
#include "core/aggregation/buffered.h"
#include "core/aggregation/deltas.h"
#include "core/security/hmac.h"
#include "core/tensor/safetensors.h"
#include "core/util/base64.h"
#include "core/util/fs.h"
#include "core/util/log.h"
#include "core/util/seed.h"

namespace zk0 {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

constexpr const char* kContributionKey = "zk0.contribution";

std::string round_folder(int round) {
  char name[32];
  std::snprintf(name, sizeof name, "round-%04d", round);
  return name;
}

Clock::duration seconds(double s) { return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)); }

}  // namespace

std::string Coordinator::buffer_dir(int round) const { return spec_.output_dir + "/buffer/" + round_folder(round); }

void Coordinator::open_buffer(int round) {
  auto b = std::make_unique<Buffer>();
  b->round = round;
  b->plan = strategy_->configure_round(round, 1, available_clients());
  b->global = global_;
  b->aggregation = strategy_->begin_aggregation(std::shared_ptr<const ParameterSet>(global_, &global_->parameters));
  b->opened = Clock::now();
  b->deadline = b->opened + seconds(spec_.strategy.round_timeout_seconds);
  recent_globals_[round] = global_;
  const int oldest = round - spec_.strategy.asynchronous.max_staleness;
  for (auto it = recent_globals_.begin(); it != recent_globals_.end();) it = it->first < oldest ? recent_globals_.erase(it) : std::next(it);
  buffer_ = std::move(b);
}

nlohmann::json Coordinator::contribution_json(const Contribution& c) const {
  nlohmann::json j = c.report;
  j["client"] = c.client;
  j["status"] = c.status;
  if (!c.reason.empty()) j["reason"] = c.reason;
  j["task"] = c.task;
  j["sequence"] = c.sequence;
  j["base_round"] = c.base_round;
  j["staleness"] = c.staleness;
  j["staleness_weight"] = c.staleness_weight;
  add_update_fields(j, c.weight, c.update_norm, c.clip_scale, c.bytes_uploaded, c.upload_seconds);
  return j;
}

void Coordinator::restore_buffer(Buffer& b) {
  const std::string dir = buffer_dir(b.round);
  if (!fs::exists(dir)) return;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    const std::string bytes = read_file(path);
    if (!checkpoint_key_.empty()) {
      std::string signature;
      try {
        signature = read_file(path + ".hmac");
      } catch (const std::exception&) {
        throw std::runtime_error("buffered update " + path + " has no signature (" + path + ".hmac)");
      }
      if (signature != hmac_sha256_hex(checkpoint_key_, bytes))
        throw std::runtime_error("buffered update " + path + ": its signature does not verify with the checkpoint key");
    }
    std::map<std::string, std::string> metadata;
    ParameterSet update = decode_safetensors(bytes, path, &metadata);
    check_same_layout(update, b.global->parameters, "buffered update " + path);
    std::string bad;
    if (!all_finite(update, bad)) throw std::runtime_error("buffered update " + path + ": tensor '" + bad + "' is not finite");
    const auto meta = metadata.find(kContributionKey);
    if (meta == metadata.end()) throw std::runtime_error("buffered update " + path + " lacks its " + kContributionKey + " metadata");
    const nlohmann::json j = nlohmann::json::parse(meta->second);
    Contribution c;
    c.client = j.at("client").get<std::string>();
    c.task = j.at("task").get<uint64_t>();
    c.sequence = j.at("sequence").get<int>();
    c.base_round = j.at("base_round").get<int>();
    c.staleness = j.at("staleness").get<int>();
    c.staleness_weight = j.at("staleness_weight").get<double>();
    c.weight = j.at("weight").get<double>();
    c.report = j.at("report");
    c.bytes_uploaded = j.at("bytes_uploaded").get<uint64_t>();
    c.upload_seconds = j.at("upload_seconds").get<double>();
    c.update_norm = j.at("distance_from_global").get<double>();
    const nlohmann::json& evidence = j.at("evidence");
    c.evidence.identity = evidence.at("identity");
    c.evidence.claims = evidence.at("claims").get<std::string>();
    c.evidence.signature = base64_decode(evidence.at("signature").get<std::string>(), Base64::kStandard);
    b.aggregation->add(c.key(), update, c.weight);
    b.next_sequence = std::max(b.next_sequence, c.sequence + 1);
    log_info("buffered_update_restored", {kv("round", b.round), kv("client", c.client), kv("sequence", c.sequence),
                                          kv("staleness", c.staleness)});
    b.contributions.push_back(std::move(c));
  }
}

Instruction Coordinator::poll_buffered(Client& c) {
  // A worker asks again only once it is done with its task: uploaded, refused or given up.
  if (c.task && c.task->upload_ticket == 0 && !c.task->aggregating) c.task.reset();
  // A full buffer is about to become the next version: a task from this one would be stale at birth.
  if (c.task || !buffer_ || buffer_->closed ||
      static_cast<int>(buffer_->contributions.size()) + buffer_->in_flight >= spec_.strategy.min_fit_clients)
    return {};
  const auto now = Clock::now();
  int training = 0, up = 0;
  for (const auto& [name, other] : clients_) {
    if (!alive(other, now)) continue;
    ++up;
    training += other.task.has_value();
  }
  if (training >= std::max(1, static_cast<int>(std::ceil(spec_.strategy.fraction_fit * up)))) return {};
  c.task = Task{};
  c.task->base_round = global_->round;
  c.task->number = ++c.tasks_started;
  Instruction ins;
  ins.kind = Instruction::Kind::Train;
  ins.round = global_->round;
  ins.parameters_digest = global_->manifest.digest_hex();
  ins.local_steps = buffer_->plan.local_steps;
  ins.proximal_mu = buffer_->plan.proximal_mu;
  // Each task draws its own batches, even from a version the client trained on before.
  ins.seed = mix_seed(client_round_seed(spec_.training.seed, ins.round, c.name), c.task->number);
  ins.deadline_ms = static_cast<int64_t>(spec_.strategy.round_timeout_seconds * 1000);
  log_info("task_started", {kv("client", c.name), kv("round", ins.round), kv("task", c.task->number)});
  return ins;
}

bool Coordinator::abandon_buffered(const Client& c, int round) const {
  if (!c.task || c.task->base_round != round) return true;
  return buffer_ && buffer_->round - round > spec_.strategy.asynchronous.max_staleness;
}

std::shared_ptr<const GlobalModel> Coordinator::buffered_global(const Client& c, int round, const std::string& digest) const {
  const auto it = recent_globals_.find(round);
  if (!c.task || c.task->base_round != round || it == recent_globals_.end() || it->second->manifest.digest_hex() != digest)
    throw Refusal(Refusal::Kind::StaleRound, "client '" + c.name + "' has no task on round " + std::to_string(round) +
                                                 " with parameters " + bounded(digest, 64));
  return it->second;
}

void Coordinator::reject_buffered(Client& c, int round, const std::string& reason, const std::string& message) {
  if (buffer_ && c.task && !c.task->evidence.identity.is_null())
    buffer_->rejected_entries.push_back(ledger_entry(
        buffer_->round, c.name, c.task->evidence,
        {{"client", c.name}, {"status", "rejected"}, {"reason", reason}, {"base_round", round}, {"task", c.task->number}}));
  c.task.reset();
  ++rejections_[reason];
  metrics_.rejected(reason);
  log_warn("update_rejected", {kv("client", c.name), kv("round", round), kv("reason", reason), kv("detail", message)});
  if (buffer_) buffer_->rejected.push_back({{"client", c.name}, {"base_round", round}, {"reason", reason}, {"detail", message}});
  publish_status();
  changed_.notify_all();
}

UploadPermit Coordinator::begin_buffered_upload(Client& c, int round, const std::string& base_digest, CheckedClaims checked) {
  if (!c.task || c.task->base_round != round)
    throw Refusal(Refusal::Kind::StaleRound, "client '" + c.name + "' has no task on round " + std::to_string(round));
  if (c.task->upload_ticket != 0 || c.task->aggregating)
    throw Refusal(Refusal::Kind::Busy, "client '" + c.name + "' is already uploading its update of round " + std::to_string(round));
  c.task->evidence = std::move(checked.evidence);
  if (!checked.rejection.empty()) {
    reject_buffered(c, round, checked.rejection, checked.message);
    throw Refusal(Refusal::Kind::InvalidUpdate, checked.message);
  }
  const int max_staleness = spec_.strategy.asynchronous.max_staleness;
  const auto base = recent_globals_.find(round);
  if (base == recent_globals_.end() || (buffer_ && buffer_->round - round > max_staleness)) {
    const std::string message = "update trained from round " + std::to_string(round) + " is more than maxStaleness " +
                                std::to_string(max_staleness) + " versions behind round " + std::to_string(global_->round);
    reject_buffered(c, round, "too_stale", message);
    throw Refusal(Refusal::Kind::InvalidUpdate, message);
  }
  if (base_digest != base->second->manifest.digest_hex()) {
    const std::string message = "update was trained from " + bounded(base_digest, 64) + ", not round " + std::to_string(round) + "'s global";
    reject_buffered(c, round, "stale_base", message);
    throw Refusal(Refusal::Kind::InvalidUpdate, message);
  }
  c.task->upload_ticket = next_upload_ticket_++;
  log_info("upload_started", {kv("client", c.name), kv("round", round), kv("task", c.task->number)});
  return {c.name, round, c.task->upload_ticket, Clock::now() + seconds(spec_.strategy.round_timeout_seconds)};
}

void Coordinator::submit_buffered(const UploadPermit& permit, ParameterSet update, const TrainReport& report,
                                  const std::string& update_digest, uint64_t bytes_uploaded, double upload_seconds) {
  const int buffer_size = spec_.strategy.min_fit_clients;
  Buffer* b = nullptr;
  Contribution contribution;
  std::shared_ptr<const GlobalModel> base;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto held = [&]() -> Client* {
      Client& c = clients_.at(permit.client);
      return c.task && c.task->upload_ticket == permit.ticket ? &c : nullptr;
    };
    if (!held()) throw Refusal(Refusal::Kind::StaleRound, "the upload of client '" + permit.client + "' is no longer expected");
    // A full buffer is being folded into the next version: the update joins the next buffer.
    while (!finished_ && !stop_ && (!buffer_ || buffer_->closed ||
                                    static_cast<int>(buffer_->contributions.size()) + buffer_->in_flight >= buffer_size))
      changed_.wait_for(lock, std::chrono::milliseconds(50));
    Client* c = held();
    if (finished_ || stop_ || !c) throw Refusal(Refusal::Kind::StaleRound, "the run ended while the update arrived");
    const int staleness = buffer_->round - permit.round;
    const int max_staleness = spec_.strategy.asynchronous.max_staleness;
    const auto it = recent_globals_.find(permit.round);
    if (staleness > max_staleness || it == recent_globals_.end()) {
      const std::string message = "update trained from round " + std::to_string(permit.round) + " arrived " +
                                  std::to_string(staleness) + " versions late (maxStaleness " + std::to_string(max_staleness) + ")";
      reject_buffered(*c, permit.round, "too_stale", message);
      throw Refusal(Refusal::Kind::InvalidUpdate, message);
    }
    base = it->second;
    auto reject = [&](const std::string& reason, const std::string& message) {
      reject_buffered(*c, permit.round, reason, message);
      return Refusal(Refusal::Kind::InvalidUpdate, message);
    };
    if (const std::string wrong = claims_mismatch(c->task->evidence, update_digest, report); !wrong.empty())
      throw reject("claims_mismatch", wrong);
    if (report.samples == 0 || report.steps == 0) throw reject("no_samples", "update reports no trained samples");
    if (!std::isfinite(report.loss)) throw reject("non_finite", "reported loss is not finite");
    const UpdateCheck check = check_update(update, base->parameters, spec_.strategy.max_update_norm);
    if (!check.ok()) throw reject(check.reason, check.message);
    b = buffer_.get();
    ++b->in_flight;
    c->task->aggregating = true;
    contribution.client = permit.client;
    contribution.task = c->task->number;
    contribution.sequence = b->next_sequence++;
    contribution.base_round = permit.round;
    contribution.staleness = staleness;
    contribution.staleness_weight = staleness_weight(spec_.strategy.asynchronous.staleness_weight, staleness);
    contribution.weight = 1.0 / buffer_size;
    contribution.report = report_json(report);
    contribution.bytes_uploaded = bytes_uploaded;
    contribution.upload_seconds = upload_seconds;
    contribution.update_norm = check.norm;
    contribution.evidence = c->task->evidence;
  }
  std::string failure;
  try {
    // Outside the main lock, like a synchronous round's folding: 100M parameters take a while.
    ParameterSet rebased = rebase_update(std::move(update), base->parameters, b->global->parameters, contribution.staleness_weight);
    {
      std::lock_guard<std::mutex> agg(aggregation_mu_);
      b->aggregation->add(contribution.key(), rebased, contribution.weight);
    }
    nlohmann::json meta = contribution_json(contribution);
    meta["report"] = contribution.report;
    meta["evidence"] = {{"identity", contribution.evidence.identity},
                        {"claims", contribution.evidence.claims},
                        {"signature", base64_encode(contribution.evidence.signature, Base64::kStandard)}};
    char name[48];
    std::snprintf(name, sizeof name, "%06d-", contribution.sequence);
    const std::string path = buffer_dir(b->round) + "/" + name + contribution.client + ".safetensors";
    const std::string bytes = encode_safetensors(rebased, {{kContributionKey, meta.dump()}});
    write_file_atomic(path, bytes);
    if (!checkpoint_key_.empty()) write_file_atomic(path + ".hmac", hmac_sha256_hex(checkpoint_key_, bytes));
  } catch (const std::exception& e) {
    failure = e.what();
  }
  std::lock_guard<std::mutex> lock(mu_);
  --b->in_flight;
  Client& c = clients_.at(permit.client);
  c.task.reset();
  if (!failure.empty()) {
    // The buffer may hold part of this update, or hold one no file can restore.
    b->failure = "round " + std::to_string(b->round) + ": the update of client '" + permit.client + "' could not be buffered: " + failure;
    log_error("aggregation_failed", {kv("client", permit.client), kv("round", b->round), kv("error", failure)});
    changed_.notify_all();
    throw Refusal(Refusal::Kind::InvalidUpdate, "aggregation failed: " + failure);
  }
  metrics_.updates_accepted.Increment();
  metrics_.update_staleness.Observe(contribution.staleness);
  metrics_.transferred("upload", static_cast<double>(bytes_uploaded), upload_seconds);
  c.last_loss = report.loss;
  c.state = "idle";
  ++c.rounds_accepted;
  log_info("update_accepted", {kv("client", permit.client), kv("round", b->round), kv("base_round", contribution.base_round),
                               kv("task", contribution.task), kv("sequence", contribution.sequence),
                               kv("staleness", contribution.staleness), kv("staleness_weight", contribution.staleness_weight),
                               kv("loss", report.loss), kv("update_norm", contribution.update_norm)});
  b->contributions.push_back(std::move(contribution));
  publish_status();
  changed_.notify_all();
}

int Coordinator::run_buffered(const std::function<int(const std::string&, int)>& fail) {
  const int buffer_size = spec_.strategy.min_fit_clients;
  // Folders of versions the latest checkpoint already holds are spent.
  if (fs::exists(spec_.output_dir + "/buffer"))
    for (const auto& e : fs::directory_iterator(spec_.output_dir + "/buffer"))
      if (e.path().filename().string() < round_folder(start_round_)) fs::remove_all(e.path());
  for (int round = start_round_; round <= spec_.rounds; ++round) {
    double started = 0;  // when the buffer opened, once enough clients were up
    Clock::time_point t0;
    std::unique_ptr<Buffer> full;
    {
      std::unique_lock<std::mutex> lock(mu_);
      current_round_ = round;
      if (const std::string why = wait_for_quorum(round, lock); !why.empty()) {
        lock.unlock();
        return fail(why, kExitRunFailed);
      }
      started = unix_now(), t0 = Clock::now();
      open_buffer(round);
      restore_buffer(*buffer_);
      log_info("round_started", {kv("round", round), kv("buffered", buffer_->contributions.size()), kv("buffer_size", buffer_size),
                                 kv("local_steps", buffer_->plan.local_steps), kv("proximal_mu", buffer_->plan.proximal_mu)});
      metrics_.round.Set(round);
      publish_status();
      changed_.notify_all();
      for (;;) {
        if (stop_) {
          lock.unlock();
          return fail("stopped", kExitError);
        }
        if (!buffer_->failure.empty()) {
          const std::string why = buffer_->failure;
          lock.unlock();
          return fail(why, kExitError);
        }
        if (static_cast<int>(buffer_->contributions.size()) >= buffer_size && buffer_->in_flight == 0) break;
        if (Clock::now() >= buffer_->deadline) {
          const std::string why = "round " + std::to_string(round) + ": " + std::to_string(buffer_->contributions.size()) + " of " +
                                  std::to_string(buffer_size) + " updates arrived within roundTimeoutSeconds";
          lock.unlock();
          return fail(why, kExitRunFailed);
        }
        loop_watchdog_.beat();
        changed_.wait_until(lock, std::min(buffer_->deadline, Clock::now() + std::chrono::milliseconds(200)));
      }
      buffer_->closed = true;
      full = std::move(buffer_);
    }
    const auto agg_start = Clock::now();
    AggregationResult result = full->aggregation->finish();
    const double aggregation_seconds = seconds_since(agg_start);
    metrics_.aggregation_duration.Observe(aggregation_seconds);
    std::string bad;
    if (!all_finite(result.parameters, bad))
      return fail("round " + std::to_string(round) + ": the aggregate of the buffer is not finite (tensor '" + bad + "')", kExitError);
    size_t discarded = 0;
    std::vector<nlohmann::json> ledger_entries = std::move(full->rejected_entries);
    nlohmann::json record = {{"round", round},
                             {"started_at", started},
                             {"proximal_mu", full->plan.proximal_mu},
                             {"buffer_size", buffer_size},
                             {"aggregation_seconds", aggregation_seconds},
                             {"clients", nlohmann::json::array()},
                             {"rejected", full->rejected}};
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const UpdateDecision& d : result.decisions)
        for (auto& c : full->contributions) {
          if (c.key() != d.client) continue;
          if (d.outcome == "clipped") c.clip_scale = d.scale, metrics_.updates_clipped.Increment();
          if (d.outcome == "discarded") c.status = "discarded", c.reason = d.reason, ++discarded;
        }
      int max_staleness = 0;
      for (const auto& c : full->contributions) {
        record["clients"].push_back(contribution_json(c));
        ledger_entries.push_back(ledger_entry(round, c.client, c.evidence, contribution_json(c)));
        max_staleness = std::max(max_staleness, c.staleness);
      }
      record["max_staleness"] = max_staleness;
    }
    if (result.clip_norm) record["clip_norm"] = *result.clip_norm;
    const size_t accepted = full->contributions.size() - discarded;
    const std::string failure =
        complete_round(round, std::move(result.parameters), std::move(record), std::move(ledger_entries), t0, accepted, discarded);
    if (!failure.empty()) return fail(failure, kExitError);
    // The checkpoint of this version holds these updates now.
    fs::remove_all(buffer_dir(round));
  }
  return kExitOk;
}

}  // namespace zk0
