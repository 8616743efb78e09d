#pragma once
// The aggregator's round loop and the registry of clients it drives. The gRPC service
// (service.cpp) only translates calls into the methods below; everything that decides who
// trains, when a round ends and what is accepted lives here, behind one mutex.
//
// Nothing a client sends is trusted beyond what it can prove: its name comes from its verified
// certificate under mutual TLS, its session id is 16 random bytes compared in constant time, the
// weight of its update is what the server asked it to train (never its own sample count), and the
// update itself must be finite and within spec.strategy.maxUpdateNorm of the global parameters.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "aggregator/download_steps.h"
#include "aggregator/evaluation.h"
#include "aggregator/global_model.h"
#include "aggregator/metrics.h"
#include "aggregator/run_outputs.h"
#include "aggregator/status_writer.h"
#include "core/aggregation/strategy.h"
#include "core/ledger/ledger.h"
#include "core/metrics/train_report.h"
#include "core/policy/policy.h"
#include "core/security/certificate.h"
#include "core/tensor/manifest.h"
#include "core/util/exit_codes.h"
#include "core/util/watchdog.h"

namespace zk0 {

// Why the coordinator refused a call; the service maps each to a gRPC status code.
class Refusal : public std::runtime_error {
 public:
  enum class Kind { UnknownClient, PermissionDenied, UnknownSession, Incompatible, StaleRound, Busy, InvalidUpdate, InvalidArgument };
  Refusal(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

struct Instruction {
  enum class Kind { Wait, Train, Finish } kind = Kind::Wait;
  int round = 0;
  std::string parameters_digest;
  int local_steps = 0;
  double proximal_mu = 0;
  double clip_norm = 0;  // the worker clips its delta to it (privacy, clipOn: worker)
  uint64_t seed = 0;
  int64_t deadline_ms = 0;
};

// Who is calling, as far as the transport can prove it: under mutual TLS the verified client
// certificate (empty otherwise).
struct Caller {
  std::string session;
  std::optional<CertificateInfo> certificate;
  std::string certificate_pem;
};

// What a worker signed about its upload (core/ledger/ledger.h), as its header carries it.
struct SignedClaims {
  std::string claims;     // canonical UpdateClaims
  std::string signature;  // raw bytes
  std::string signing_key;  // PEM; only without a client certificate
};

// An upload the coordinator has authorised: the header named an open round, a selected client
// still pending, and this round's global parameters. Only one per client at a time.
struct UploadPermit {
  std::string client;
  int round = 0;
  uint64_t ticket = 0;
  std::chrono::steady_clock::time_point deadline;  // the round's
  // A synchronous round closes at its deadline: what is still arriving then is no longer wanted,
  // and receiving it would only hold an upload slot and the worker's uplink. (An asynchronous
  // update still folds into a later version: its deadline only bounds the transfer.)
  bool ends_with_round = false;
};

// The seed of a client's sampling and noise in a round: fixed by the run's seed, so that a
// resumed or repeated round trains exactly as before.
uint64_t client_round_seed(uint64_t run_seed, int round, const std::string& client);

// States a worker may report in a heartbeat (proto/zk0/v1/federation.proto).
bool is_reportable_worker_state(const std::string& state);

class Coordinator {
 public:
  static constexpr std::chrono::milliseconds kHeartbeatInterval{1000};
  static constexpr std::chrono::milliseconds kHeartbeatTimeout{5000};
  static constexpr size_t kMaxReasonBytes = 1024;
  static constexpr uint64_t kMaxDatasetSamples = uint64_t{1} << 40;

  explicit Coordinator(const FederationSpec& spec);
  ~Coordinator();

  // Runs every round to the end. Returns an exit code (core/util/exit_codes.h): kExitOk, or on
  // failure, logged with its reason, kExitRunFailed (quorum, start timeout) or kExitError.
  int run();

  // The latest status.json document: the operator reads it from GET /status.
  std::string status_json() const;
  // Lets a running run() stop at the next wait (SIGTERM).
  void request_stop();
  // After run(): waits until every reachable worker has been told to finish, at most `timeout`.
  void drain(std::chrono::milliseconds timeout);

  // --- called by the gRPC service, from any thread ---
  std::string register_client(const std::string& name, const std::string& policy_type, const std::string& frozen_digest,
                              uint64_t dataset_samples, const std::optional<CertificateInfo>& certificate);
  struct HeartbeatAnswer {
    bool abandon_round = false;  // `round` (0: none) is no longer worth finishing for this client
    bool run_finished = false;   // the run is over
  };
  HeartbeatAnswer heartbeat(const Caller& caller, const std::string& state, int round);
  Instruction poll(const Caller& caller, std::chrono::milliseconds wait);
  // The round's global, or under transport.compression the encoded step to it from `held` (a
  // global the worker holds) when that step is kept. Throws Refusal.
  std::shared_ptr<const GlobalModel> global_for(const Caller& caller, int round, const std::string& digest,
                                                const std::string& held);
  const Manifest& trainable_layout() const { return layout_; }
  // The client a call comes from (its session and, under mutual TLS, its certificate); throws Refusal.
  std::string client_name(const Caller& caller);
  // A transfer of the client's moved a chunk: it is alive, as a heartbeat says. On a slow link a
  // heartbeat can wait seconds behind the transfer's bytes on the same connection.
  void transfer_progressed(const std::string& client);

  // Authorises an upload from its header, before a byte of parameters is read: the round, the
  // base and the worker's signed claims; throws Refusal.
  UploadPermit begin_upload(const Caller& caller, int round, const std::string& base_digest, const SignedClaims& claims);
  // Ends an upload that was not submitted (the stream broke or failed verification); the client
  // may try again while the round is open.
  void end_upload(const UploadPermit& permit);
  // The parameters an upload under transport.compression stands for: the round's global plus the
  // delta it decodes to (core/codec/update_delta.h). Throws CodecError.
  ParameterSet decode_upload(const UploadPermit& permit, const ParameterSet& encoded, const Manifest& manifest);
  // Verifies and folds in an update whose manifest digest is `update_digest`; throws Refusal. The
  // update is consumed.
  void submit(const UploadPermit& permit, ParameterSet update, const TrainReport& report, const std::string& update_digest,
              uint64_t bytes_uploaded, double upload_seconds);
  // Under spec.checkpoints.keepUpdates: the upload as it arrived (encoded under a codec, the
  // manifest's encoding kept in its metadata), for `zk0 ledger verify --recompute`.
  void keep_upload(const UploadPermit& permit, const ParameterSet& uploaded, const Manifest& manifest) const;
  // An upload that failed verification in transit (the worker may retry).
  void record_rejection(const UploadPermit& permit, const std::string& reason, const std::string& message);
  void report_failure(const Caller& caller, int round, const std::string& reason, bool fatal);

  int total_rounds() const { return spec_.rounds; }
  // A download that was sent in full (from its resume point, if it had one).
  void record_download(uint64_t bytes, double seconds) { metrics_.transferred("download", static_cast<double>(bytes), seconds); }
  // A transfer that continued from `bytes_kept` after its stream broke.
  void record_resume(const std::string& client, int round, const std::string& direction, uint64_t bytes_kept);
  const std::shared_ptr<prometheus::Registry>& metrics_registry() const { return registry_; }
  std::string frozen_digest() const { return frozen_digest_; }
  AggregatorMetrics& metrics() { return metrics_; }
  // Armed while run() runs; beaten each time the round loop comes back to check its deadlines
  // (every 200 ms while it waits). Silent for longer than spec.strategy.roundTimeoutSeconds, the
  // loop is wedged: a lock never released, a disk that hangs a checkpoint, a fold that never
  // ends. A round's own work between two checks (aggregation, evaluation, checkpoint) must fit in
  // that time too: a server slower than that could not keep the run's deadlines anyway.
  const Watchdog& loop_watchdog() const { return loop_watchdog_; }

 private:
  // The ledger's evidence of an upload: who sends it (the caller's certificate, or the key its
  // claims are signed with) and what it signed. `rejection` is empty when the claims are this
  // upload's (run, client, round, base) and the signature verifies, else the reason to refuse it.
  struct CheckedClaims {
    UpdateEvidence evidence;
    std::string rejection, message;
  };
  // Asynchronous rounds: one client's current piece of training.
  struct Task {
    int base_round = 0;       // the global version it trains from (GlobalModel::round)
    uint64_t number = 0;      // the client's tasks so far, this one included: its seed and its name
    uint64_t upload_ticket = 0;
    bool aggregating = false;  // its update is being folded into the buffer
    UpdateEvidence evidence;   // of the upload in progress
  };
  struct Client {
    std::string name;
    std::string session;
    std::string fingerprint;  // of the certificate it registered with (mutual TLS)
    std::chrono::steady_clock::time_point last_seen;
    std::string state = "registered";
    bool failed = false;  // reported a fatal error; out until it registers again
    std::string failure;
    uint64_t dataset_samples = 0;
    std::optional<double> last_loss;
    int rounds_accepted = 0;
    std::optional<Task> task;  // asynchronous rounds only
    uint64_t tasks_started = 0;
  };
  // A client's contribution scores on one evaluation set (spec.evaluation.contributionScores): a
  // round's, or summed over the rounds scored.
  struct ContributionScore {
    std::optional<double> first_order, leave_one_out;
  };
  using SetScores = std::vector<ContributionScore>;  // by evaluation set, in the spec's order
  // Adds a round's scores to the client's totals: kept apart from Client (a client registers after
  // a resumed aggregator restored them).
  void add_scores(const std::string& client, const SetScores& round_scores);  // requires mu_
  nlohmann::json scores_by_set(const SetScores& scores) const;  // {set: {first_order, leave_one_out}}
  struct Participant {
    std::string status = "pending";  // pending, aggregating, accepted, discarded, rejected, failed, dropped, timed_out
    std::string reason;
    double weight = 0;  // the share of the round's planned samples: what the server asked it to train
    uint64_t upload_ticket = 0;  // non-zero while an upload is being received
    TrainReport report;
    uint64_t bytes_uploaded = 0;
    double upload_seconds = 0;
    double update_norm = 0;
    double clip_scale = 1;  // below 1: norm bounding scaled the update down
    std::string clip_reason;  // why the rule or the worker clipped it
    int transfer_rejections = 0;
    UpdateEvidence evidence;  // for the ledger, once an upload began
    std::vector<double> descent;  // -<each set's evaluation gradient, its delta>, when first-order scores are due
    SetScores scores;             // its contribution scores, once the round is scored
  };
  struct OpenRound {
    int round = 0, attempt = 0;
    RoundPlan plan;
    std::chrono::steady_clock::time_point opened, deadline;
    std::map<std::string, Participant> participants;
    std::unique_ptr<Aggregation> aggregation;
    bool closed = false;
    bool aggregation_failed = false;  // an add() threw: the sums may hold part of an update
    int in_flight = 0;  // submits folding into the aggregation outside the lock
    // Each evaluation set's loss gradient at the round's global, when first-order scores are due.
    std::shared_ptr<const std::vector<ParameterSet>> eval_gradients;
  };

  // Asynchronous rounds (FedBuff): the updates that make the next global version, from whatever
  // version each was trained on. aggregator/buffered_rounds.cpp.
  struct Contribution {
    std::string client;
    uint64_t task = 0;
    int base_round = 0, staleness = 0;
    double staleness_weight = 1, weight = 0;
    int sequence = 0;             // its place in the buffer, which names its file
    nlohmann::json report;        // the worker's, as the outputs show it
    uint64_t bytes_uploaded = 0;
    double upload_seconds = 0, update_norm = 0, clip_scale = 1;
    std::string status = "accepted", reason;  // accepted, discarded (by the rule)
    UpdateEvidence evidence;
    std::string key() const { return client + "#" + std::to_string(sequence); }  // the rule's name for it
  };
  struct Buffer {
    int round = 0;  // folds into the global of round + 1
    RoundPlan plan;
    std::shared_ptr<const GlobalModel> global;
    std::unique_ptr<Aggregation> aggregation;
    std::vector<Contribution> contributions;
    nlohmann::json rejected = nlohmann::json::array();  // updates refused while it was open
    std::vector<nlohmann::json> rejected_entries;       // their ledger entries
    std::chrono::steady_clock::time_point opened, deadline;
    int in_flight = 0;  // admitted updates being folded outside the lock
    int next_sequence = 0;
    std::string failure;  // folding or keeping an update failed: the run cannot go on
    bool closed = false;
  };
  bool asynchronous() const { return spec_.strategy.asynchronous.enabled; }
  int run_synchronous(const std::function<int(const std::string&, int)>& fail);
  int run_buffered(const std::function<int(const std::string&, int)>& fail);
  void open_buffer(int round);  // requires mu_
  Instruction poll_buffered(Client& c);  // requires mu_
  bool abandon_buffered(const Client& c, int round) const;  // requires mu_
  std::shared_ptr<const GlobalModel> buffered_global(const Client& c, int round, const std::string& digest) const;  // requires mu_
  UploadPermit begin_buffered_upload(Client& c, int round, const std::string& base_digest, CheckedClaims checked);  // requires mu_
  void submit_buffered(const UploadPermit& permit, ParameterSet update, const TrainReport& report, const std::string& update_digest,
                       uint64_t bytes_uploaded, double upload_seconds);
  void reject_buffered(Client& c, int round, const std::string& reason, const std::string& message);  // requires mu_
  nlohmann::json contribution_json(const Contribution& c) const;
  std::string buffer_dir(int round) const;
  void restore_buffer(Buffer& b);

  // What every kind of round does once its rule produced a finite aggregate: the server step, the
  // new global, evaluation, the round's record, its ledger entries (`updates`, then the round's
  // own) and the checkpoint. Empty, or why the run must fail.
  std::string complete_round(int round, ParameterSet aggregate, nlohmann::json record, std::vector<nlohmann::json> updates,
                             std::chrono::steady_clock::time_point t0, size_t accepted, size_t discarded);

  CheckedClaims check_claims(const Caller& caller, const std::string& client, int round, const std::string& base_digest,
                             const SignedClaims& signed_claims) const;
  // Empty when what arrived is what the worker signed (its manifest digest and its report).
  static std::string claims_mismatch(const UpdateEvidence& evidence, const std::string& update_digest, const TrainReport& report);
  nlohmann::json ledger_entry(int round, const std::string& client, const UpdateEvidence& evidence, nlohmann::json decision) const;
  // Under keepUpdates: the round's base global beside the uploads of `folded`, every other upload
  // (refused, or of an attempt that failed) removed.
  void keep_round(int round, const std::vector<std::string>& folded) const;
  bool keeps_uploads() const { return spec_.checkpoints.keep_updates || spec_.evaluation.contribution_scores.leave_one_out; }

  Client& client_for(const Caller& caller);  // requires mu_; throws Refusal
  bool alive(const Client& c, std::chrono::steady_clock::time_point now) const;
  std::vector<std::string> available_clients();  // requires mu_
  bool wait_for_available(int count, std::unique_lock<std::mutex>& lock);
  // Waits for minAvailableClients; empty once they are up, else why the run must fail.
  std::string wait_for_quorum(int round, std::unique_lock<std::mutex>& lock);
  void run_round_attempt(int round, int attempt, std::shared_ptr<const std::vector<ParameterSet>> eval_gradients,
                         std::unique_lock<std::mutex>& lock);
  bool evaluation_due(int round) const;
  // spec.evaluation.contributionScores for a finished round whose rule made `aggregate`: each
  // accepted update's first-order share and its leave-one-out difference (the rule run again
  // without it, from the uploads kept for the round). Outside the lock; the policy holds the
  // round's global again afterwards.
  void score_round(int round, OpenRound& finished, const ParameterSet& aggregate);
  Participant& pending_participant(const UploadPermit& permit);  // requires mu_; throws Refusal
  nlohmann::json participant_json(const std::string& name, const Participant& p) const;
  void refuse_registration(const std::string& reason, const std::string& name, const std::string& message, Refusal::Kind kind);
  void publish_status();  // builds status.json and hands it to the writer; requires mu_
  void set_global(ParameterSet parameters, int round);
  // Every evaluation set's result (the first is the server loss), when the round is evaluated.
  std::optional<std::vector<SetResult>> evaluate_if_due(int round);
  // The round record's fields for an evaluation: server_eval_loss and eval_* (the first set's),
  // eval_sets (every set's by name).
  static nlohmann::json evaluation_fields(const std::vector<SetResult>& results);
  void checkpoint(int round);

  FederationSpec spec_;
  Watchdog loop_watchdog_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  AggregatorMetrics metrics_{*registry_};
  std::unique_ptr<Policy> policy_;
  std::unique_ptr<Strategy> strategy_;
  std::unique_ptr<EvaluationSets> evaluation_;
  std::unique_ptr<RunOutputs> outputs_;
  std::unique_ptr<StatusWriter> status_writer_;
  std::unique_ptr<DownloadSteps> download_steps_;  // under transport.compression
  std::unique_ptr<LedgerWriter> ledger_;
  Manifest layout_;
  std::string frozen_digest_;
  std::string fingerprint_;
  std::string checkpoint_key_;  // empty: checkpoints unsigned
  int start_round_ = 1;

  mutable std::mutex status_mu_;
  std::string last_status_ = "{}";

  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, Client> clients_;        // by name
  std::map<std::string, std::string> sessions_;  // SHA-256 of a session id -> client name
  uint64_t next_upload_ticket_ = 1;
  std::shared_ptr<const GlobalModel> global_;
  std::unique_ptr<OpenRound> open_;
  std::unique_ptr<Buffer> buffer_;  // asynchronous rounds
  std::map<int, std::shared_ptr<const GlobalModel>> recent_globals_;  // the versions tasks may still train from
  std::mutex aggregation_mu_;
  std::map<std::string, int> rejections_;  // by reason, for the whole run
  std::map<std::string, int> discards_;    // by rule, for the whole run
  std::map<std::string, SetScores> score_totals_;
  void apply_decisions(OpenRound& round, const AggregationResult& result);  // requires mu_
  bool finished_ = false;  // the run is over, succeeded or failed
  std::string phase_ = "Pending";  // Pending, Running, Succeeded, Failed
  std::string message_;            // why it failed
  bool stop_ = false;
  int current_round_ = 0;
  std::map<std::string, double> last_losses_;  // each evaluation set's latest loss, by name
  std::optional<double> server_loss() const;  // the first set's
  nlohmann::json privacy_;  // the strategy's privacy report, null without privacy
  std::optional<int> rounds_run_;  // set when the run ended before spec.rounds (the privacy budget)
};

}  // namespace zk0
