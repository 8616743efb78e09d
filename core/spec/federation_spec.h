#pragma once
// FederationRun (apiVersion zk0.io/v1alpha1): the one description of a federated run. The same
// file runs locally (`zk0 run`) and on a cluster (`kubectl apply`); the CRD's schema in crds/
// is checked against this type by a test. Field names in YAML are camelCase as in Kubernetes.
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/codec/update_codec.h"

namespace zk0 {

// Every problem found in a spec, one per line, each starting with the field path.
class SpecError : public std::runtime_error {
 public:
  explicit SpecError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

// Trajectories generated in-process: a stand-in for recorded data in demos and tests.
struct SyntheticDatasetSpec {
  std::string task;
  int episodes = 40;
  int episode_length = 80;
  uint64_t seed = 0;
};

// A dataset on a PersistentVolumeClaim (cluster only): the operator mounts it read-only.
struct VolumeClaimSource {
  std::string claim_name;
  std::string sub_path;  // folder inside the volume; empty = the volume's root
};

// How spec.partition splits a dataset's episodes among its clients: dealt out at random (iid),
// in contiguous runs of episodes sorted by task (task: each client sees few tasks), or each
// task's episodes shared out by proportions drawn from Dirichlet(alpha) (small alpha: skewed).
enum class PartitionScheme { IID, Task, Dirichlet };

// One client's share of a dataset split by episode among `clients`. The split is computed where
// the dataset is opened, from its own episode list, the same in every process.
struct EpisodePartition {
  int clients = 1;
  int index = 0;  // this client's share, 0-based
  PartitionScheme by = PartitionScheme::IID;
  double alpha = 1;  // by: dirichlet only
  uint64_t seed = 0;
};

struct DatasetSpec {
  std::string path;  // a LeRobot dataset on local disk; on a cluster, a host path on the pod's node
  std::optional<VolumeClaimSource> volume_claim;
  std::string repo_id;   // or a Hugging Face Hub dataset, read from the Hub's cache layout
  std::string revision;  // Hub revision; "main" when repo_id is set and this is empty
  std::optional<SyntheticDatasetSpec> synthetic;
  std::vector<int64_t> episodes;  // subset of episode indices; empty means all
  std::optional<EpisodePartition> partition;  // of those episodes

  // "path:/data/x", "hub:user/set@main", "synthetic:reach-left@7" (task and seed): names the
  // recorded samples, so two datasets that may hold different samples never share a name.
  std::string describe() const;
};

struct ResourcesSpec {
  double cpu = 0;      // cores: the process's compute threads (and the pod's CPU request). 0 = unset
  int gpu = 0;         // GPUs: the worker trains on CUDA device 0 (and the pod requests nvidia.com/gpu)
  std::string memory;  // cluster: the pod's memory request and limit, a quantity such as 32Gi
};

// Where a pod may run, on a cluster (`zk0 run` has one machine and ignores it). Kubernetes' own
// shapes, passed through to the pod. `overrides` may touch only what kPodOverrideFields lists:
// the operator re-applies its security settings after the patch either way.
struct PodPlacementSpec {
  nlohmann::json node_selector = nlohmann::json::object();  // label -> value
  nlohmann::json tolerations = nlohmann::json::array();
  nlohmann::json affinity = nlohmann::json::object();
  nlohmann::json overrides = nlohmann::json::object();  // JSON merge patch onto the generated pod

  bool empty() const { return node_selector.empty() && tolerations.empty() && affinity.empty() && overrides.empty(); }
};

// A client's own certificate under mutual TLS: the aggregator binds the client's name to it
// (a URI SAN spiffe://zk0.io/run/<run>/client/<name>, core/security/certificate.h).
struct ClientTlsSpec {
  std::string secret_name;  // cluster: a Secret with ca.crt, tls.crt, tls.key; default <run>-<client>-tls
  std::string cert_file;
  std::string key_file;

  bool empty() const { return secret_name.empty() && cert_file.empty() && key_file.empty(); }
};

struct ClientSpec {
  std::string name;
  // A robot owner's client: no process or pod is started for it; its owner joins from their own
  // machine with `zk0 join` and a token, and chooses the dataset and device there.
  bool remote = false;
  DatasetSpec dataset;
  ResourcesSpec resources;
  PodPlacementSpec pod;
  ClientTlsSpec tls;
};

// The aggregator's pod on a cluster: checkpoints and outputs live on a PersistentVolumeClaim.
struct AggregatorSpec {
  ResourcesSpec resources;  // cpu and memory; the aggregator evaluates on CPU
  PodPlacementSpec pod;
  std::string storage_size = "10Gi";
  std::string storage_class;  // empty = the cluster's default StorageClass
};

// How the operator treats failures and time on a cluster.
struct RunPolicySpec {
  int backoff_limit = 3;                    // per client and for the aggregator: pod recreations + container restarts
  int64_t active_deadline_seconds = 0;      // 0 = no deadline for the whole run
  int64_t ttl_seconds_after_finished = -1;  // the run is deleted this long after it ends; -1 = kept
  bool suspend = false;                     // deletes the pods, keeps checkpoints; unsuspend resumes
};

struct SecretKeyRef {
  std::string name;
  std::string key;
};

enum class EvalMode { Quick, Full };

// How much each client's update helped the server's held-out loss, on every evaluated round:
// firstOrder, the loss's first-order change along the client's share of the average (one
// gradient of the evaluation loss a round, a dot product per update); leaveOneOut, the loss of
// the round's aggregate without the client minus the loss with it (exact; one evaluation per
// client, and the round's updates kept on disk while it is scored).
struct ContributionScoresSpec {
  bool first_order = false;
  bool leave_one_out = false;
  bool any() const { return first_order || leave_one_out; }
};

// One dataset the server evaluates the global policy on: the run's own held-out set, or one a
// sponsor publishes to see (and pay for) progress on its task.
struct EvaluationSetSpec {
  std::string name = "heldout";  // what outputs, metrics and the status call its loss
  std::string field = "spec.evaluation";  // where the spec set it, for error messages
  DatasetSpec dataset;
  EvalMode mode = EvalMode::Quick;
  int batches = 8;  // quick mode: batches sampled across all episodes
  int batch_size = 64;
  uint64_t seed = 0;  // fixes sampled indices, noise and time per batch
};

// spec.evaluation names one set inline (dataset, mode, batches, batchSize, seed: the set
// "heldout") or several under `sets`. The first set's loss is the run's server loss: the one its
// strategy, status and best checkpoint follow; every set's loss is reported beside it.
struct EvaluationSpec {
  std::vector<EvaluationSetSpec> sets = {EvaluationSetSpec{}};
  int every_rounds = 1;
  ContributionScoresSpec contribution_scores;
};

enum class LrScheduleType { Constant, Cosine };
enum class Precision { FP32, BF16 };
// AdamW's moments between rounds. reset: every round starts from zero moments, as Flower and the
// system zk0 replaces do, so an update depends only on the round's global parameters. keep: the
// moments carry over to the client's next round, persisted in the worker's state directory.
enum class OptimizerState { Reset, Keep };

// Sample-level differential privacy in each worker, DP-SGD (Abadi et al. 2016): every local step
// Poisson-samples the client's frames with rate q = batchSize / frames, clips each sample's
// gradient to L2 norm C, sums them, adds Gaussian noise of std z x C and divides by batchSize.
// Each client accounts for its own steps (RDP, as client-level privacy) and reports its epsilon.
struct SamplePrivacySpec {
  bool enabled = false;
  double clip_norm = 0;
  double noise_multiplier = 0;  // z; unset with target_epsilon: the least for localSteps x rounds steps
  double target_epsilon = 0;    // 0: no budget; otherwise the worker trains no round that would exceed it
  double delta = 0;
  std::optional<uint64_t> insecure_noise_seed;  // reproducible noise and sampling, for tests only
};

struct TrainingSpec {
  int local_steps = 100;
  int batch_size = 64;
  double learning_rate = 1e-4;
  std::array<double, 2> betas{0.9, 0.95};
  double eps = 1e-8;
  double weight_decay = 1e-10;
  double grad_clip_norm = 10.0;  // 0 disables clipping; not used under privacy, which clips each sample
  SamplePrivacySpec privacy;
  LrScheduleType lr_schedule = LrScheduleType::Cosine;
  double min_lr_ratio = 0.1;  // cosine ends at learning_rate * min_lr_ratio
  int warmup_steps = 0;
  Precision precision = Precision::FP32;
  OptimizerState optimizer_state = OptimizerState::Reset;
  uint64_t seed = 0;
};

enum class StrategyType { FedAvg, FedProx };
enum class MuScheduleType { Constant, Step, Adaptive };
enum class AggregationRule { Mean, Median, TrimmedMean, Krum, MultiKrum, Bulyan };

// How the server combines a round's updates (deltas from its global). mean: weighted by the
// server's weights (FedAvg). The others resist Byzantine clients; see core/aggregation/.
struct AggregationSpec {
  AggregationRule rule = AggregationRule::Mean;
  int byzantine = 0;           // f, the Byzantine updates tolerated: krum, multiKrum, bulyan
  int select = 0;              // m, the updates Multi-Krum averages
  double trim_fraction = 0;    // trimmedMean: floor(fraction * n) values cut from each tail
};

enum class ServerOptimizerType { None, AvgM, Adam, Yogi, Adagrad };

// FedOpt (Reddi et al. 2021) on the server: a step along aggregate - global instead of the jump.
struct ServerOptimizerSpec {
  ServerOptimizerType type = ServerOptimizerType::None;
  double learning_rate = 0;                // eta; unset: avgm 1.0, adam 0.1, yogi 0.01, adagrad 0.1 (Flower's)
  double momentum = 0.9;                   // avgm
  std::array<double, 2> betas{0.9, 0.99};  // adam, yogi
  double tau = 1e-3;                       // adam, yogi, adagrad: keeps the step finite where v is 0
};

// Norm bounding before the rule: every delta longer than the round's clip norm is scaled to it.
// The clip norm is `norm`, or the `quantile` of the round's delta norms (nearest rank).
struct ClippingSpec {
  double norm = 0;      // 0: not a fixed norm
  double quantile = 0;  // 0: not a quantile
  bool enabled() const { return norm > 0 || quantile > 0; }
};

// Client-level differential privacy, DP-FedAvg (McMahan et al. 2018): each round Poisson-samples
// every available client with probability samplingRate; each sampled client's delta is clipped to
// L2 norm C (by the aggregator, or by the worker and checked by the aggregator); the deltas are
// summed unweighted and divided by the expected count m = samplingRate x available clients, so one
// client moves the average by at most C/m; Gaussian noise of std noiseMultiplier x C/m is added.
// core/privacy/ accounts for it (RDP) and reports epsilon at `delta` after every round.
enum class ClipLocation { Server, Worker };

// Andrew et al. 2021: C follows the targetQuantile of the update norms, C <- C exp(-lr (b - q))
// with b the noisy fraction of sampled updates that were not clipped (count noise std
// countNoiseStd, in clients); the update's noise multiplier shrinks to pay for that release.
struct AdaptiveClippingSpec {
  bool enabled = false;
  double initial_norm = 0.1;
  double target_quantile = 0.5;
  double learning_rate = 0.2;
  double count_noise_std = 0;  // resolved by parse_spec: unset, the expected sampled clients / 20
};

struct PrivacySpec {
  bool enabled = false;
  double clip_norm = 0;  // fixed C; 0 with adaptive clipping
  AdaptiveClippingSpec adaptive;
  ClipLocation clip_on = ClipLocation::Server;
  double sampling_rate = 1.0;  // q of Poisson sampling
  // z, the noise std over the sensitivity of everything a round releases. Unset with
  // target_epsilon: the least z that keeps `rounds` rounds within the target.
  double noise_multiplier = 0;
  double target_epsilon = 0;  // 0: no budget; otherwise no round starts that would exceed it
  double delta = 0;
  // Reproducible noise and sampling, for tests only: anyone who knows the seed can subtract the noise.
  std::optional<uint64_t> insecure_noise_seed;
};

enum class StalenessWeight { InverseSqrt, Constant };

// FedBuff (Nguyen et al. 2022): no rounds that wait for everyone. Every selected client trains
// continuously on the newest global it was given; the server folds each minFitClients arrived
// updates into the next global version (a "round" of spec.rounds), scaling each by its staleness
// weight s(t) (t: versions since its base; inverseSqrt 1/sqrt(1 + t), or constant 1), and
// rejects updates staler than maxStaleness. fractionFit of the available clients train at once.
struct AsynchronousSpec {
  bool enabled = false;
  int max_staleness = 10;
  StalenessWeight staleness_weight = StalenessWeight::InverseSqrt;
};

struct StrategySpec {
  StrategyType type = StrategyType::FedProx;
  double proximal_mu = 0.01;
  MuScheduleType mu_schedule = MuScheduleType::Constant;
  int mu_schedule_every_rounds = 10;  // step: mu *= factor every N rounds
  double mu_schedule_factor = 0.5;
  double fraction_fit = 1.0;
  int min_fit_clients = 2;
  int min_available_clients = 2;
  double start_timeout_seconds = 300;
  double round_timeout_seconds = 1800;
  int max_round_attempts = 3;  // a round without quorum is repeated at most this often
  // An update farther than this (L2) from the round's global parameters is rejected
  // (update_norm): it bounds what one client can move the average by, and keeps every sum finite.
  double max_update_norm = 1e4;
  AggregationSpec aggregation;
  ClippingSpec clipping;
  ServerOptimizerSpec server_optimizer;
  AsynchronousSpec asynchronous;
  PrivacySpec privacy;
};

struct PolicySpec {
  std::string type = "flow-matching-mlp";
  nlohmann::ordered_json config = nlohmann::ordered_json::object();  // validated by the policy type; key order kept
  std::string pretrained;                            // directory with model.safetensors
  std::vector<std::string> train;                    // parameter groups that train; empty = the type's default
};

struct CheckpointSpec {
  int every_rounds = 1;
  int keep_last = 3;  // 0 keeps all
  // HMAC-SHA256 key that signs SHA256SUMS; the aggregator resumes only from a checkpoint it
  // signed. A file locally; on a cluster a Secret (key `key`), by default <run>-checkpoint-key,
  // which the operator creates. Empty: unsigned (SHA256SUMS still catches corruption).
  std::string signing_key_file;
  std::string signing_key_secret;
  // Keeps every round's base global and the updates folded into it, as they arrived, under
  // <outputDir>/updates/round_NNNN/, so that `zk0 ledger verify --recompute` can aggregate them
  // again and compare with the ledger's globals. About (clients + 1) x the trainable size a round.
  bool keep_updates = false;
};

// The aggregator's TLS. With `mutual`, every client also presents its own certificate
// (spec.clients[].tls) naming it. `mutual: true` alone asks the runtime for certificates: `zk0 run`
// issues a CA and one certificate per process; the operator mounts Secrets.
struct TlsSpec {
  std::string secret_name;  // cluster: the aggregator's Secret with ca.crt, tls.crt, tls.key
  std::string ca_file;      // verifies the peer
  std::string cert_file;    // the aggregator's certificate
  std::string key_file;
  bool mutual = false;  // aggregator demands and verifies client certificates
  // The name the aggregator's certificate carries, for clients that reach it at another address
  // (a node port, a load balancer): checked instead of the address's host.
  std::string server_name;

  bool has_files() const { return !cert_file.empty() || !ca_file.empty(); }
  bool generated() const { return mutual && !has_files() && secret_name.empty(); }
  bool enabled() const { return has_files() || !secret_name.empty() || mutual; }
};

// How remote clients join (core/security/join_token.h): a single-use token per client, and a
// client certificate signed by the run's CA over a key the client made itself.
struct JoinSpec {
  std::string ca_key_file;     // the key of transport.tls.caFile's CA, which signs joining clients
  std::string token_key_file;  // the HMAC key that join tokens are signed with
  // Cluster: the Secret (tls.crt, tls.key) of the CA that signed the aggregator's certificate, as
  // a cert-manager CA Issuer holds it; the aggregator signs joining clients' certificates with it.
  std::string ca_secret;
  int64_t token_ttl_seconds = 24 * 3600;
  int64_t certificate_ttl_seconds = 7 * 24 * 3600;  // a joined client renews at two thirds of it

  bool has_files() const { return !ca_key_file.empty() || !token_key_file.empty(); }
};

// Cluster: how remote clients reach the aggregator from outside the cluster, a Service
// <run>-aggregator-remote carrying only the gRPC port.
enum class ExposeType { kNodePort, kLoadBalancer };
struct ExposeSpec {
  ExposeType type = ExposeType::kNodePort;
  int node_port = 0;    // 0: the cluster picks one
  std::string address;  // HOST:PORT owners dial when it is neither a node's nor the balancer's (NAT, a proxy)
};

// transport.compression: uploads travel as the delta from the round's global, encoded
// (core/codec/update_codec.h); error feedback carries what a lossy codec dropped into the
// client's next update, its residual kept in the worker's state folder.
struct CompressionSpec {
  CodecSettings codec;  // none: plain float32 parameters, as without the section
  bool error_feedback = true;
};

struct TransportSpec {
  CompressionSpec compression;
  uint64_t chunk_bytes = 4ull << 20;
  uint64_t max_message_bytes = 8ull << 20;  // anything larger is refused by gRPC
  int transfer_attempts = 3;                // a transfer failing verification is retried this often
  TlsSpec tls;
  JoinSpec join;
  ExposeSpec expose;  // meaningful only with remote clients
};

// The simulation runtime (`zk0 run`): one worker process hosts every client as a virtual client,
// loads the frozen weights once for all of them and trains `concurrency` clients at a time
// (1: one after another, the serialized-GPU mode). Each still registers and exchanges its
// updates with the aggregator over gRPC under its own name.
struct SimulationSpec {
  int concurrency = 1;
};


struct FederationSpec {
  std::string name;
  std::string namespace_;  // metadata.namespace, used on a cluster
  int rounds = 10;
  std::string output_dir = "outputs";
  std::vector<ClientSpec> clients;
  EvaluationSpec evaluation;
  TrainingSpec training;
  StrategySpec strategy;
  PolicySpec policy;
  CheckpointSpec checkpoints;
  TransportSpec transport;
  AggregatorSpec aggregator;
  RunPolicySpec run_policy;
  std::optional<SecretKeyRef> hub_token_secret;  // cluster: token for private Hub datasets
  std::optional<SimulationSpec> simulation;

  const ClientSpec& client(const std::string& name) const;  // throws std::out_of_range
  bool has_remote_clients() const;
};

// What spec.clients[].pod.overrides and spec.aggregator.pod.overrides may set: pod metadata and
// scheduling, never the containers, volumes, host namespaces or the service account.
extern const char* const kPodOverrideMetadataFields[];
extern const char* const kPodOverrideSpecFields[];

// Parses and validates; throws SpecError listing every problem with its field path.
FederationSpec parse_spec(const std::string& yaml_text);

// How many clients a simulation trains at a time: `flag` (--concurrency as typed, empty when
// absent), else spec.simulation's, else 1; a whole number from 1 to the clients this machine
// runs. Throws SpecError naming --concurrency (or spec.clients when every client is remote).
int simulation_concurrency(const FederationSpec& spec, const std::string& flag);

FederationSpec load_spec(const std::string& path);

// Fields that only a cluster gives meaning to, by path: `zk0 run` names them in one log line.
std::vector<std::string> cluster_only_fields(const FederationSpec& spec);

// What a remote client is sent when it joins: the run as it needs it to train, none of the
// aggregator's file paths or keys, of the other clients only how many there are, and no
// evaluation set's name or dataset (one set whose path is kWithheldDataset stands in for them).
inline constexpr const char* kWithheldDataset = "withheld-by-the-aggregator";
FederationSpec client_view(const FederationSpec& spec, const std::string& client);

// The spec with every default filled in, as YAML that parse_spec reads back to an equal spec.
std::string to_yaml(const FederationSpec& spec);

// SHA-256 of the resolved spec with `rounds` left out: a restarted aggregator resumes only a
// run whose spec is the same apart from a changed round count.
std::string resume_fingerprint(const FederationSpec& spec);

const char* to_string(EvalMode v);
const char* to_string(LrScheduleType v);
const char* to_string(Precision v);
const char* to_string(PartitionScheme v);
const char* to_string(StrategyType v);
const char* to_string(ExposeType v);
const char* to_string(MuScheduleType v);
const char* to_string(AggregationRule v);
const char* to_string(ServerOptimizerType v);
const char* to_string(OptimizerState v);
inline const char* to_string(CodecKind v) { return codec_name(v); }
const char* to_string(StalenessWeight v);
const char* to_string(ClipLocation v);

// A Hugging Face Hub id (owner/name) rather than a local folder.
bool looks_like_hub_id(const std::string& s);

}  // namespace zk0
