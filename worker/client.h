#pragma once
// The worker's side of the protocol: register, heartbeat, poll, download, train, upload.
// Transient failures (aggregator restarting, a transfer failing verification) are retried
// within bounds; anything the worker cannot recover from is reported to the aggregator.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/codec/error_feedback.h"
#include "core/security/signing.h"
#include "core/transport/parameter_stream.h"
#include "core/util/watchdog.h"
#include "worker/contribution.h"
#include "worker/metrics.h"
#include "worker/trainer.h"
#include "zk0/v1/federation.grpc.pb.h"

namespace zk0 {

// The globals the clients of one process hold, one copy per digest: a hundred simulated clients
// holding the same 400 MB global hold it once. An entry lives while a client holds it.
class HeldGlobals {
 public:
  // The copy already held under `digest`, or `parameters`, now held under it.
  std::shared_ptr<const ParameterSet> intern(const std::string& digest, std::shared_ptr<const ParameterSet> parameters);

 private:
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<const ParameterSet>> held_;
};

// What the clients of one process share (the simulation runtime's virtual clients): the
// policies they train on, the registry their metrics go to (each series labelled with its
// client) and the prefix cache's metrics. Empty: a worker of one client, with its own.
struct SharedWorkerParts {
  std::shared_ptr<PolicyPool> policies;
  std::shared_ptr<prometheus::Registry> registry;
  std::shared_ptr<PrefixCacheMetrics> prefix_cache_metrics;
  // Held while a client opens its dataset: a hundred clients parsing their files at once would
  // starve the process's heartbeats of CPU, and the aggregator drops clients it does not hear from.
  std::shared_ptr<std::mutex> dataset_opening;
  std::shared_ptr<HeldGlobals> held_globals;
};

class WorkerClient {
 public:
  WorkerClient(const FederationSpec& spec, std::string client_name, const std::string& address, const std::string& state_dir,
               const SharedWorkerParts& shared = {});
  // Returns the process exit code: 0 when the aggregator finished the run.
  int run();
  void request_stop() { stop_ = true; }
  const std::string& name() const { return name_; }
  // Called with each trained update before it is uploaded. The only user is the attack harness
  // (tests/attack), which rewrites updates the way a Byzantine client would; zk0-worker sets none.
  using UpdateHook = std::function<void(const RoundTask& task, const ParameterSet& global, RoundResult& result)>;
  void before_upload(UpdateHook hook) { before_upload_ = std::move(hook); }
  const std::shared_ptr<prometheus::Registry>& metrics_registry() const { return registry_; }
  // The worker's liveness (its /healthz). Busy (downloading, training, uploading) and without
  // progress for longer than spec.strategy.roundTimeoutSeconds, with no chunk moved, no batch
  // delivered and no step completed, the worker is stuck: the aggregator has given up on its
  // round by then, and what hangs (a read from a dataset on a dead mount, a stream whose peer
  // went silent) cannot be abandoned from inside, so only a new process helps. Waiting for the
  // next round or for the aggregator is idle, never stuck. Shared, so that a health endpoint may
  // outlive the client.
  std::shared_ptr<const Watchdog> progress() const { return progress_; }
  // Its GET /status: the rounds it trained, the updates it delivered, its last loss.
  std::shared_ptr<const Contribution> contribution() const { return contribution_; }

 private:
  bool connect_and_register(const std::string& open_error);
  void heartbeat_loop();
  void set_state(const std::string& s);  // arms the progress watchdog while busy
  // What became of a transfer: done, refused because the round moved on (no failure), or
  // failed transferAttempts times (failure says the last reason).
  struct Transfer {
    bool done = false;
    std::string failure;
  };
  void train_round(const v1::Instruction& ins);
  // The round's global into `out`. Under transport.compression from the global the worker holds,
  // through the encoded steps the aggregator keeps (aggregator/download_steps.h), its digest
  // checked against the instruction's; otherwise, or when that fails, the whole global.
  Transfer download(const v1::Instruction& ins, std::shared_ptr<const ParameterSet>& out, double& seconds, uint64_t& bytes);
  // One parameter stream: the whole global, or with `held_digest` non-empty possibly the encoded step
  // from it. Transfers resume from the last verified chunk after a broken stream; they fail after
  // transferAttempts attempts in a row that moved nothing forward.
  Transfer receive(const v1::Instruction& ins, const std::string& held_digest, ParameterSet& out, Manifest& manifest,
                   uint64_t& bytes);
  // Uploads `parameters` under `manifest` (the trained set, or its encoding under
  // transport.compression) with the round's report.
  Transfer upload(const v1::Instruction& ins, const Manifest& manifest, const ParameterSet& parameters, const TrainReport& report);
  StreamPosition upload_position(const v1::Instruction& ins, const Manifest& manifest);  // {} when unknown
  // Waits for the channel to reconnect, at most kReconnectAllowance; false when the round was
  // abandoned or the worker is stopping meanwhile.
  bool wait_for_link();
  void report_failure(int round, const std::string& reason, bool fatal);

  FederationSpec spec_;
  std::string name_;
  std::shared_ptr<prometheus::Registry> registry_;
  WorkerMetrics metrics_;
  std::shared_ptr<PrefixCacheMetrics> prefix_cache_metrics_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Federation::Stub> stub_;
  std::unique_ptr<LocalTrainer> trainer_;
  // Under transport.compression with errorFeedback: what earlier uploads' encoding dropped.
  std::unique_ptr<ErrorFeedback> feedback_;
  // Under transport.compression: the last global downloaded, the base of the next download's step.
  std::shared_ptr<const ParameterSet> held_;
  std::string held_digest_;
  std::shared_ptr<HeldGlobals> held_globals_;
  // Signs the claims of each update for the contribution ledger: the client certificate's key
  // under mutual TLS (the aggregator knows the certificate), else an Ed25519 key kept in the
  // state folder, whose public half travels with each upload (signing_key_pem_).
  std::optional<SigningKey> signer_;
  std::string signing_key_pem_;
  std::mutex session_mu_;
  std::string session_;
  std::string state_ = "idle";
  std::shared_ptr<Watchdog> progress_;
  std::shared_ptr<Contribution> contribution_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::atomic<int> working_round_{0};
  std::atomic<bool> abandon_round_{false};
  // Heard from a FINISH instruction or a heartbeat: the run is over.
  std::atomic<bool> run_finished_{false};
  // The download or upload stream in flight, which the heartbeat thread cancels once the run is
  // over (its bytes are no longer wanted, and the worker's poll waits behind them on a slow link).
  class InFlight {
   public:
    InFlight(WorkerClient& client, grpc::ClientContext& ctx);
    ~InFlight();
   private:
    WorkerClient& client_;
  };
  std::mutex in_flight_mu_;
  grpc::ClientContext* in_flight_ = nullptr;
  UpdateHook before_upload_;
  std::shared_ptr<std::mutex> dataset_opening_;
};

}  // namespace zk0
