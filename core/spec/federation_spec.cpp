#include "core/spec/federation_spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "core/privacy/noise_multiplier.h"
#include "core/spec/spec_fields.h"
#include "core/tensor/hash.h"
#include "core/util/fs.h"
#include "core/util/yaml_json.h"

namespace zk0 {

using namespace spec_fields;

SpecError::SpecError(std::vector<std::string> problems)
    : std::runtime_error(join_lines(problems)), problems_(std::move(problems)) {}

const char* to_string(EvalMode v) { return v == EvalMode::Quick ? "quick" : "full"; }
const char* to_string(LrScheduleType v) { return v == LrScheduleType::Constant ? "constant" : "cosine"; }
const char* to_string(Precision v) { return v == Precision::FP32 ? "fp32" : "bf16"; }
const char* to_string(PartitionScheme v) {
  switch (v) {
    case PartitionScheme::IID: return "iid";
    case PartitionScheme::Task: return "task";
    case PartitionScheme::Dirichlet: return "dirichlet";
  }
  return "?";
}
const char* to_string(StrategyType v) { return v == StrategyType::FedAvg ? "fedavg" : "fedprox"; }
const char* to_string(ExposeType v) { return v == ExposeType::kNodePort ? "NodePort" : "LoadBalancer"; }
const char* to_string(MuScheduleType v) {
  switch (v) {
    case MuScheduleType::Constant: return "constant";
    case MuScheduleType::Step: return "step";
    case MuScheduleType::Adaptive: return "adaptive";
  }
  return "constant";
}

const char* to_string(AggregationRule v) {
  switch (v) {
    case AggregationRule::Mean: return "mean";
    case AggregationRule::Median: return "median";
    case AggregationRule::TrimmedMean: return "trimmedMean";
    case AggregationRule::Krum: return "krum";
    case AggregationRule::MultiKrum: return "multiKrum";
    case AggregationRule::Bulyan: return "bulyan";
  }
  return "mean";
}
const char* to_string(ServerOptimizerType v) {
  switch (v) {
    case ServerOptimizerType::None: return "none";
    case ServerOptimizerType::AvgM: return "avgm";
    case ServerOptimizerType::Adam: return "adam";
    case ServerOptimizerType::Yogi: return "yogi";
    case ServerOptimizerType::Adagrad: return "adagrad";
  }
  return "none";
}
const char* to_string(OptimizerState v) { return v == OptimizerState::Reset ? "reset" : "keep"; }
const char* to_string(StalenessWeight v) { return v == StalenessWeight::InverseSqrt ? "inverseSqrt" : "constant"; }
const char* to_string(ClipLocation v) { return v == ClipLocation::Server ? "server" : "worker"; }

bool looks_like_hub_id(const std::string& s) {
  return !s.empty() && s.front() != '/' && s.front() != '.' && s.find('/') != std::string::npos;
}

const char* const kPodOverrideMetadataFields[] = {"labels", "annotations", nullptr};
const char* const kPodOverrideSpecFields[] = {"priorityClassName", "priority",  "affinity",      "tolerations",
                                              "nodeSelector",      "topologySpreadConstraints",   "schedulerName",
                                              "runtimeClassName",  "terminationGracePeriodSeconds", "imagePullSecrets",
                                              "dnsConfig",         nullptr};

std::string DatasetSpec::describe() const {
  if (synthetic) return "synthetic:" + synthetic->task + "@" + std::to_string(synthetic->seed);
  if (volume_claim) return "pvc:" + volume_claim->claim_name + (volume_claim->sub_path.empty() ? "" : "/" + volume_claim->sub_path);
  if (!repo_id.empty()) return "hub:" + repo_id + "@" + revision;
  return "path:" + path;
}

const ClientSpec& FederationSpec::client(const std::string& client_name) const {
  for (const auto& c : clients)
    if (c.name == client_name) return c;
  throw std::out_of_range("spec.clients: no client named '" + client_name + "'");
}

FederationSpec client_view(const FederationSpec& spec, const std::string& client) {
  FederationSpec view = spec;
  // The others stay as nameless remote entries: the quorum is checked against their number, and
  // one owner learns nothing of another.
  spec.client(client);
  int peer = 0;
  for (auto& c : view.clients) {
    if (c.name == client) continue;
    std::string name;
    do name = "peer-" + std::to_string(++peer);
    while (name == client);
    c = ClientSpec{};
    c.name = name;
    c.remote = true;
  }
  // Where the evaluation sets live is the sponsors' and the aggregator's: an owner who could read
  // them could fit its updates to them and game its contribution score. The worker never
  // evaluates, so it gets one placeholder set (a spec must name one) and the scoring choices.
  EvaluationSetSpec withheld;
  withheld.dataset.path = kWithheldDataset;
  view.evaluation.sets = {withheld};
  view.transport.tls = TlsSpec{};
  view.transport.tls.mutual = true;
  view.transport.tls.server_name = spec.transport.tls.server_name;
  view.transport.join.ca_key_file.clear();
  view.transport.join.token_key_file.clear();
  view.transport.join.ca_secret.clear();
  view.transport.expose = ExposeSpec{};
  view.checkpoints.signing_key_file.clear();
  view.checkpoints.signing_key_secret.clear();
  view.hub_token_secret.reset();
  return view;
}

bool FederationSpec::has_remote_clients() const {
  return std::any_of(clients.begin(), clients.end(), [](const ClientSpec& c) { return c.remote; });
}

namespace {
FederationSpec parse_yaml(const std::string& yaml_text);
}  // namespace

namespace {

// spec.strategy.aggregation and spec.strategy.clipping. A round aggregates at least minFitClients
// updates, so each rule's minimum is checked against it: what passes here cannot fail for want
// of updates at run time.
void read_aggregation(Fields& strategy, StrategySpec& st, std::vector<std::string>& problems) {
  const int n = st.min_fit_clients;
  const std::string fit = strategy.path("minFitClients");
  if (strategy.has("aggregation")) {
    Fields a(strategy.node("aggregation"), strategy.path("aggregation"), problems);
    auto& ag = st.aggregation;
    a.get_enum("rule", ag.rule,
               names_of({AggregationRule::Mean, AggregationRule::Median, AggregationRule::TrimmedMean, AggregationRule::Krum,
                         AggregationRule::MultiKrum, AggregationRule::Bulyan}));
    const std::string rule = to_string(ag.rule);
    const bool krum_family = ag.rule == AggregationRule::Krum || ag.rule == AggregationRule::MultiKrum || ag.rule == AggregationRule::Bulyan;
    a.get("byzantine", ag.byzantine, krum_family);
    a.get("select", ag.select, ag.rule == AggregationRule::MultiKrum);
    a.get("trimFraction", ag.trim_fraction, ag.rule == AggregationRule::TrimmedMean);
    if (!krum_family && a.has("byzantine")) a.problem(a.path("byzantine"), "only applies to krum, multiKrum and bulyan");
    if (ag.rule != AggregationRule::MultiKrum && a.has("select")) a.problem(a.path("select"), "only applies to multiKrum");
    if (ag.rule != AggregationRule::TrimmedMean && a.has("trimFraction")) a.problem(a.path("trimFraction"), "only applies to trimmedMean");
    const int f = ag.byzantine;
    if (krum_family && f < 0) a.problem(a.path("byzantine"), "must not be negative");
    if (krum_family && f >= 0) {
      // Krum scores each update by its n - f - 2 nearest others: with n <= 2f + 2 an attacker's f
      // updates can outnumber the honest neighbours. Bulyan needs n >= 4f + 3 (El Mhamdi et al.).
      const int needed = ag.rule == AggregationRule::Bulyan ? 4 * f + 3 : 2 * f + 3;
      if (n < needed)
        strategy.problem(fit, std::to_string(n) + " is too few for " + rule + " with byzantine " + std::to_string(f) + ": it needs at least " +
                                  std::to_string(needed) + (ag.rule == AggregationRule::Bulyan ? " (4f + 3)" : " (2f + 3)"));
    }
    if (ag.rule == AggregationRule::MultiKrum && a.has("select") && (ag.select < 1 || ag.select > n - f))
      a.problem(a.path("select"), "must be in [1, minFitClients - byzantine] = [1, " + std::to_string(n - f) + "] (got " +
                                      std::to_string(ag.select) + ")");
    if (ag.rule == AggregationRule::TrimmedMean && a.has("trimFraction")) {
      if (!(ag.trim_fraction > 0 && ag.trim_fraction < 0.5)) {
        a.problem(a.path("trimFraction"), "must be in (0, 0.5)");
      } else if (static_cast<int>(std::floor(ag.trim_fraction * n)) < 1) {
        // Flower's FedTrimmedAvg trims int(beta * n) and so, with few clients, silently nothing.
        a.problem(a.path("trimFraction"), "trims nothing with minFitClients " + std::to_string(n) + " (floor(" +
                                              std::to_string(ag.trim_fraction) + " * " + std::to_string(n) + ") = 0): use at least " +
                                              std::to_string(1.0 / n) + " or more clients");
      }
    }
  }
  if (strategy.has("serverOptimizer")) {
    Fields o(strategy.node("serverOptimizer"), strategy.path("serverOptimizer"), problems);
    auto& so = st.server_optimizer;
    o.get_enum("type", so.type,
               names_of({ServerOptimizerType::AvgM, ServerOptimizerType::Adam, ServerOptimizerType::Yogi, ServerOptimizerType::Adagrad}));
    if (!o.has("type")) o.problem(o.path("type"), "is required");
    o.get("lr", so.learning_rate);
    if (!o.has("lr"))
      so.learning_rate = so.type == ServerOptimizerType::AvgM ? 1.0 : so.type == ServerOptimizerType::Yogi ? 0.01 : 0.1;
    require(so.learning_rate > 0 && std::isfinite(so.learning_rate), o, "lr", "must be a positive number");
    o.get("momentum", so.momentum);
    if (o.has("momentum") && so.type != ServerOptimizerType::AvgM) o.problem(o.path("momentum"), "only applies to avgm");
    require(so.momentum >= 0 && so.momentum < 1, o, "momentum", "must be in [0, 1)");
    std::vector<double> betas;
    o.get_list("betas", betas);
    if (o.has("betas")) {
      if (so.type != ServerOptimizerType::Adam && so.type != ServerOptimizerType::Yogi) o.problem(o.path("betas"), "only applies to adam and yogi");
      if (betas.size() != 2 || betas[0] < 0 || betas[0] >= 1 || betas[1] < 0 || betas[1] >= 1)
        o.problem(o.path("betas"), "must be two numbers in [0, 1)");
      else so.betas = {betas[0], betas[1]};
    }
    o.get("tau", so.tau);
    if (o.has("tau") && so.type == ServerOptimizerType::AvgM) o.problem(o.path("tau"), "only applies to adam, yogi and adagrad");
    require(so.tau > 0 && std::isfinite(so.tau), o, "tau", "must be a positive number");
  }
  if (strategy.has("asynchronous")) {
    Fields a(strategy.node("asynchronous"), strategy.path("asynchronous"), problems);
    auto& as = st.asynchronous;
    as.enabled = true;
    a.get("maxStaleness", as.max_staleness);
    a.get_enum("stalenessWeight", as.staleness_weight, names_of({StalenessWeight::InverseSqrt, StalenessWeight::Constant}));
    require(as.max_staleness >= 0, a, "maxStaleness", "must not be negative");
    if (strategy.has("maxRoundAttempts"))
      strategy.problem(strategy.path("maxRoundAttempts"), "does not apply to asynchronous rounds, which have no attempts");
    // A robust rule's f counts clients, and one fast client may fill several places of a buffer.
    if (st.aggregation.rule != AggregationRule::Mean)
      strategy.problem(strategy.path("aggregation") + ".rule",
                       std::string("only mean applies to asynchronous rounds (got ") + to_string(st.aggregation.rule) + ")");
  }
  if (strategy.has("clipping")) {
    Fields c(strategy.node("clipping"), strategy.path("clipping"), problems);
    auto& cl = st.clipping;
    c.get("norm", cl.norm);
    c.get("quantile", cl.quantile);
    if (c.has("norm") == c.has("quantile")) {
      c.problem(strategy.path("clipping"), "set exactly one of norm or quantile");
    } else if (c.has("norm")) {
      require(cl.norm > 0 && std::isfinite(cl.norm), c, "norm", "must be a positive number");
      require(!(cl.norm > st.max_update_norm), c, "norm", "is above spec.strategy.maxUpdateNorm, which rejects such updates first");
    } else {
      require(cl.quantile > 0 && cl.quantile <= 1, c, "quantile", "must be in (0, 1]");
    }
  }
}


// What both privacy sections share: the noise (a multiplier, a target epsilon or both), delta,
// and the test-only seed, each checked with the field named.
void read_noise_settings(Fields& p, const std::string& section, double& noise_multiplier, double& target_epsilon, double& delta,
                         std::optional<uint64_t>& insecure_noise_seed) {
  p.get("noiseMultiplier", noise_multiplier);
  p.get("targetEpsilon", target_epsilon);
  p.get("delta", delta, true);
  if (p.has("insecureNoiseSeed")) {
    uint64_t seed = 0;
    p.get("insecureNoiseSeed", seed);
    insecure_noise_seed = seed;
  }
  if (p.has("noiseMultiplier"))
    require(noise_multiplier > 0 && std::isfinite(noise_multiplier), p, "noiseMultiplier",
            "must be a positive number (0 adds no noise and gives no guarantee: leave " + section + " out instead)");
  if (p.has("targetEpsilon")) require(target_epsilon > 0 && std::isfinite(target_epsilon), p, "targetEpsilon", "must be a positive number");
  if (p.has("delta")) require(delta > 0 && delta < 1, p, "delta", "must be in (0, 1)");
  if (!p.has("noiseMultiplier") && !p.has("targetEpsilon")) p.problem("spec." + section, "set noiseMultiplier, targetEpsilon or both");
}

// spec.strategy.privacy: every setting that cannot give the promised guarantee is refused here,
// with the field named, so that `zk0 validate` and the operator catch it before a round runs.
void read_privacy(Fields& strategy, const FederationSpec& spec, StrategySpec& st, std::vector<std::string>& problems) {
  Fields p(strategy.node("privacy"), strategy.path("privacy"), problems);
  PrivacySpec& pr = st.privacy;
  pr.enabled = true;
  p.get("clipNorm", pr.clip_norm);
  p.get_enum("clipOn", pr.clip_on, names_of({ClipLocation::Server, ClipLocation::Worker}));
  p.get("samplingRate", pr.sampling_rate);
  read_noise_settings(p, "strategy.privacy", pr.noise_multiplier, pr.target_epsilon, pr.delta, pr.insecure_noise_seed);
  const bool adaptive = p.has("adaptiveClipping");
  if (adaptive) {
    Fields a(p.node("adaptiveClipping"), p.path("adaptiveClipping"), problems);
    auto& ad = pr.adaptive;
    ad.enabled = true;
    a.get("initialNorm", ad.initial_norm);
    a.get("targetQuantile", ad.target_quantile);
    a.get("learningRate", ad.learning_rate);
    a.get("countNoiseStd", ad.count_noise_std);
    require(ad.initial_norm > 0 && std::isfinite(ad.initial_norm), a, "initialNorm", "must be a positive number");
    require(ad.target_quantile > 0 && ad.target_quantile < 1, a, "targetQuantile", "must be in (0, 1)");
    require(ad.learning_rate > 0 && std::isfinite(ad.learning_rate), a, "learningRate", "must be a positive number");
    if (a.has("countNoiseStd")) {
      require(ad.count_noise_std > 0 && std::isfinite(ad.count_noise_std), a, "countNoiseStd", "must be a positive number");
    } else if (spec.clients.empty()) {
      a.problem(a.path("countNoiseStd"), "is required when spec.clients does not list the clients (the default is the expected sampled clients / 20)");
    } else {
      ad.count_noise_std = pr.sampling_rate * static_cast<double>(spec.clients.size()) / 20.0;  // Flower's and the paper's default
    }
  }
  if (p.has("clipNorm") == adaptive) p.problem(strategy.path("privacy"), "set exactly one of clipNorm or adaptiveClipping");
  if (p.has("clipNorm")) require(pr.clip_norm > 0 && std::isfinite(pr.clip_norm), p, "clipNorm", "must be a positive number");
  require(pr.sampling_rate > 0 && pr.sampling_rate <= 1, p, "samplingRate", "must be in (0, 1]");
  const size_t population = spec.clients.size();
  if (pr.delta > 0 && pr.delta < 1 && population > 0 && pr.delta >= 1.0 / static_cast<double>(population)) {
    // delta is the chance the guarantee fails outright; at 1/n one of the n clients can be exposed.
    p.problem(p.path("delta"), "must be below 1/n = " + std::to_string(1.0 / static_cast<double>(population)) + " for the " +
                                   std::to_string(population) + " clients (usually well below it, such as 1e-5)");
  }
  if (p.has("targetEpsilon") && !p.has("noiseMultiplier") && pr.target_epsilon > 0 && pr.delta > 0 && pr.delta < 1 &&
      pr.sampling_rate > 0 && pr.sampling_rate <= 1) {
    try {
      (void)privacy_noise_multiplier(pr, spec.rounds);
    } catch (const std::invalid_argument& e) {
      p.problem(p.path("targetEpsilon"), e.what());
    }
  }
  if (adaptive && p.has("noiseMultiplier") && pr.adaptive.count_noise_std > 0 && pr.noise_multiplier >= 2 * pr.adaptive.count_noise_std)
    p.problem(p.path("noiseMultiplier"), "must be below 2 x adaptiveClipping.countNoiseStd = " + std::to_string(2 * pr.adaptive.count_noise_std) +
                                              ": the clipped-count release would take all of it");
  // What the sensitivity argument rests on, refused where the rest of the spec would break it.
  if (st.aggregation.rule != AggregationRule::Mean)
    strategy.problem(strategy.path("aggregation") + ".rule", std::string("only mean keeps privacy's sensitivity C/m (got ") + to_string(st.aggregation.rule) + ")");
  if (st.clipping.enabled()) strategy.problem(strategy.path("clipping"), "does not apply with strategy.privacy, which clips every update itself");
  if (st.asynchronous.enabled) strategy.problem(strategy.path("asynchronous"), "is not accounted for by strategy.privacy");
  if (strategy.has("fractionFit"))
    strategy.problem(strategy.path("fractionFit"), "does not apply with strategy.privacy: clients are Poisson-sampled at privacy.samplingRate");
  if (strategy.has("minFitClients"))
    strategy.problem(strategy.path("minFitClients"),
                     "does not apply with strategy.privacy: every round releases whatever its Poisson sample sends (a quorum would leak who took part)");
}

}  // namespace

namespace {
size_t local_clients(const FederationSpec& spec) {
  return static_cast<size_t>(std::count_if(spec.clients.begin(), spec.clients.end(), [](const ClientSpec& c) { return !c.remote; }));
}

// The one rule for spec.simulation.concurrency and --concurrency alike; "" when it holds.
std::string concurrency_problem(const FederationSpec& spec, int concurrency) {
  const size_t local = local_clients(spec);
  if (static_cast<size_t>(concurrency) <= local) return "";
  return "must not exceed the " + std::to_string(local) + " clients this machine runs (got " + std::to_string(concurrency) + ")";
}
}  // namespace

FederationSpec parse_spec(const std::string& yaml_text) {
  // yaml-cpp throws on conversions deep inside documents it accepted (a mapping used as a key, a
  // scalar where a sequence goes): every such case is a problem with the file, never a crash.
  try {
    return parse_yaml(yaml_text);
  } catch (const SpecError&) {
    throw;
  } catch (const YAML::Exception& e) {
    throw SpecError({std::string("yaml: ") + e.what()});
  } catch (const nlohmann::json::exception& e) {
    throw SpecError({std::string("yaml: ") + e.what()});
  }
}

namespace {

// spec.partition: `clients` clients named <namePrefix>-NNN, each with its share of one dataset's
// episodes (a LeRobot dataset: split as `by` says) or, from a synthetic dataset, its own
// generated one (seed + its index). Appended to spec.clients.
void read_partition(Fields& s, std::vector<ClientSpec>& clients, std::set<std::string>& names, std::vector<std::string>& problems) {
  Fields f(s.node("partition"), "spec.partition", problems);
  EpisodePartition rule;
  std::string prefix = "client";
  f.get("clients", rule.clients, true);
  f.get("namePrefix", prefix);
  const DatasetSpec dataset = read_dataset(f.node("dataset"), f.path("dataset"), problems);
  read_split_rule(f, rule);
  ClientSpec shape;
  shape.resources = read_resources(f, true, problems);
  shape.pod = read_placement(f, problems);
  constexpr int kMaxClients = 10000;
  if (rule.clients < 1 || rule.clients > kMaxClients) {
    f.problem(f.path("clients"), "must be from 1 to " + std::to_string(kMaxClients) + " (got " + std::to_string(rule.clients) + ")");
    return;
  }
  if (dataset.partition) f.problem(f.path("dataset.partition"), "is what spec.partition writes: leave it out");
  if (dataset.synthetic && (f.has("by") || f.has("alpha")))
    f.problem(f.path(f.has("by") ? "by" : "alpha"), "synthetic datasets are generated per client, not split");
  const int width = std::max<int>(3, static_cast<int>(std::to_string(rule.clients - 1).size()));
  const std::string example = prefix + "-" + std::string(static_cast<size_t>(width), '0');
  if (!valid_name(example)) {
    f.problem(f.path("namePrefix"), "client names such as '" + example + "' must be lower-case letters, digits and '-', at most 40 characters");
    return;
  }
  for (int i = 0; i < rule.clients; ++i) {
    std::string number = std::to_string(i);
    ClientSpec c = shape;
    c.name = prefix + "-" + std::string(static_cast<size_t>(width) - std::min<size_t>(number.size(), width), '0') + number;
    if (!names.insert(c.name).second) {
      f.problem(f.path("namePrefix"), "client '" + c.name + "' is also in spec.clients");
      return;
    }
    c.dataset = dataset;
    if (dataset.synthetic) {
      c.dataset.synthetic->seed = dataset.synthetic->seed + static_cast<uint64_t>(i);
    } else {
      c.dataset.partition = rule;
      c.dataset.partition->index = i;
    }
    clients.push_back(std::move(c));
  }
}

FederationSpec parse_yaml(const std::string& yaml_text) {
  std::vector<std::string> problems;
  const YAML::Node root = load_yaml(yaml_text);
  FederationSpec spec;
  {  // Fields report unknown keys when they go out of scope, before the problems are thrown
  Fields top(root, "", problems);
  Fields s(read_envelope(top, "FederationRun", spec.name, spec.namespace_, problems), "spec", problems);
  s.get("rounds", spec.rounds, true);
  require(spec.rounds >= 1, s, "rounds", "must be at least 1");
  s.get("outputDir", spec.output_dir);
  require(!spec.output_dir.empty(), s, "outputDir", "must not be empty");

  // clients
  std::set<std::string> names;
  const YAML::Node clients = s.node("clients");
  const bool partitioned = s.has("partition");
  if (clients && !clients.IsNull() && (!clients.IsSequence() || (clients.size() == 0 && !partitioned))) {
    problems.push_back("spec.clients: must be a non-empty list");
  } else if (!partitioned && (!clients || clients.IsNull())) {
    problems.push_back("spec.clients: a non-empty list is required (or spec.partition)");
  } else if (clients && clients.IsSequence()) {
    for (size_t i = 0; i < clients.size(); ++i) {
      const std::string path = "spec.clients[" + std::to_string(i) + "]";
      ClientSpec c;
      Fields cf(clients[i], path, problems);
      cf.get("name", c.name, true);
      if (!c.name.empty() && !valid_name(c.name))
        problems.push_back(path + ".name: must be lower-case letters, digits and '-', at most 40 characters (got '" + c.name + "')");
      if (!c.name.empty() && !names.insert(c.name).second)
        problems.push_back(path + ".name: '" + c.name + "' is used by another client");
      cf.get("remote", c.remote);
      if (c.remote) {
        // Its owner says at `zk0 join` what the run's author cannot know: the dataset on their
        // machine and the device to train on.
        for (const char* k : {"dataset", "resources", "pod", "tls"})
          if (cf.has(k)) cf.problem(cf.path(k), "does not apply to a remote client: its owner chooses it at zk0 join");
        spec.clients.push_back(std::move(c));
        continue;
      }
      c.dataset = read_dataset(cf.node("dataset"), path + ".dataset", problems);
      c.resources = read_resources(cf, true, problems);
      c.pod = read_placement(cf, problems);
      if (cf.has("tls")) {
        Fields tf(cf.node("tls"), cf.path("tls"), problems);
        tf.get("secretName", c.tls.secret_name);
        tf.get("certFile", c.tls.cert_file);
        tf.get("keyFile", c.tls.key_file);
        if (!c.tls.secret_name.empty() && (!c.tls.cert_file.empty() || !c.tls.key_file.empty()))
          tf.problem(tf.path("secretName"), "set either secretName or certFile and keyFile");
        if (c.tls.secret_name.empty() && (c.tls.cert_file.empty() != c.tls.key_file.empty()))
          tf.problem(tf.path(c.tls.cert_file.empty() ? "certFile" : "keyFile"), "is required with " +
                                                                                  std::string(c.tls.cert_file.empty() ? "keyFile" : "certFile"));
      }
      spec.clients.push_back(std::move(c));
    }
  }
  if (partitioned) read_partition(s, spec.clients, names, problems);

  // simulation
  if (s.has("simulation")) {
    Fields f(s.node("simulation"), "spec.simulation", problems);
    SimulationSpec sim;
    f.get("concurrency", sim.concurrency);
    require(sim.concurrency >= 1, f, "concurrency", "must be at least 1 (got " + std::to_string(sim.concurrency) + ")");
    if (sim.concurrency > 1)
      if (const std::string p = concurrency_problem(spec, sim.concurrency); !p.empty()) f.problem(f.path("concurrency"), p);
    for (size_t i = 1; i < spec.clients.size(); ++i)
      if ((spec.clients[i].resources.gpu > 0) != (spec.clients[0].resources.gpu > 0))
        problems.push_back("spec.clients[" + std::to_string(i) + "].resources.gpu: simulated clients share one device; "
                           "give every client the same (spec.clients[0] has " + std::to_string(spec.clients[0].resources.gpu) + ")");
    spec.simulation = sim;
  }

  // evaluation
  {
    Fields f(s.node("evaluation"), "spec.evaluation", problems);
    auto& e = spec.evaluation;
    const auto read_set = [&](Fields& sf, EvaluationSetSpec& set) {
      set.dataset = read_dataset(sf.node("dataset"), sf.path("dataset"), problems);
      sf.get_enum("mode", set.mode, names_of({EvalMode::Quick, EvalMode::Full}));
      sf.get("batches", set.batches);
      sf.get("batchSize", set.batch_size);
      sf.get("seed", set.seed);
      require(set.batches >= 1, sf, "batches", "must be at least 1");
      require(set.batch_size >= 1, sf, "batchSize", "must be at least 1");
      if (set.mode == EvalMode::Full && sf.has("batches")) sf.problem(sf.path("batches"), "only applies in quick mode");
    };
    if (f.has("sets")) {
      for (const char* key : {"dataset", "mode", "batches", "batchSize", "seed"})
        if (f.has(key)) f.problem(f.path(key), "give it to each of spec.evaluation.sets instead");
      const YAML::Node sets = f.node("sets");
      constexpr size_t kMaxSets = 16;  // each is evaluated every evaluated round, and once per client under leaveOneOut
      if (!sets.IsSequence() || sets.size() == 0 || sets.size() > kMaxSets) {
        problems.push_back("spec.evaluation.sets: must be a list of 1 to " + std::to_string(kMaxSets) + " evaluation sets");
      } else {
        e.sets.clear();
        std::set<std::string> set_names;
        for (size_t i = 0; i < sets.size(); ++i) {
          EvaluationSetSpec set;
          set.field = "spec.evaluation.sets[" + std::to_string(i) + "]";
          Fields sf(sets[i], set.field, problems);
          sf.get("name", set.name, true);
          if (!valid_name(set.name))
            sf.problem(sf.path("name"), "must be lower-case letters, digits and '-', at most 40 characters (got '" + set.name + "')");
          else if (!set_names.insert(set.name).second)
            sf.problem(sf.path("name"), "'" + set.name + "' names another evaluation set too");
          read_set(sf, set);
          e.sets.push_back(std::move(set));
        }
      }
    } else {
      read_set(f, e.sets.at(0));
    }
    f.get("everyRounds", e.every_rounds);
    {
      Fields cs(f.node("contributionScores"), f.path("contributionScores"), problems);
      cs.get("firstOrder", e.contribution_scores.first_order);
      cs.get("leaveOneOut", e.contribution_scores.leave_one_out);
    }
    require(e.every_rounds >= 1, f, "everyRounds", "must be at least 1");
  }

  // training
  {
    Fields f(s.node("training"), "spec.training", problems);
    auto& t = spec.training;
    f.get("localSteps", t.local_steps);
    f.get("batchSize", t.batch_size);
    f.get("gradClipNorm", t.grad_clip_norm);
    f.get_enum("precision", t.precision, names_of({Precision::FP32, Precision::BF16}));
    f.get("seed", t.seed);
    require(t.local_steps >= 1, f, "localSteps", "must be at least 1");
    require(t.batch_size >= 1, f, "batchSize", "must be at least 1");
    require(t.grad_clip_norm >= 0, f, "gradClipNorm", "must not be negative (0 disables clipping)");
    if (f.has("optimizer")) {
      Fields o(f.node("optimizer"), f.path("optimizer"), problems);
      std::string type = "adamw";
      o.get("type", type);
      if (type != "adamw") o.problem(o.path("type"), "must be adamw (got '" + type + "')");
      o.get("lr", t.learning_rate);
      std::vector<double> betas;
      o.get_list("betas", betas);
      if (o.has("betas")) {
        if (betas.size() != 2 || betas[0] < 0 || betas[0] >= 1 || betas[1] < 0 || betas[1] >= 1)
          o.problem(o.path("betas"), "must be two numbers in [0, 1)");
        else
          t.betas = {betas[0], betas[1]};
      }
      o.get("eps", t.eps);
      o.get("weightDecay", t.weight_decay);
      o.get_enum("state", t.optimizer_state, names_of({OptimizerState::Reset, OptimizerState::Keep}));
      require(t.learning_rate > 0, o, "lr", "must be positive");
      require(t.eps > 0, o, "eps", "must be positive");
      require(t.weight_decay >= 0, o, "weightDecay", "must not be negative");
    }
    if (f.has("lrSchedule")) {
      Fields l(f.node("lrSchedule"), f.path("lrSchedule"), problems);
      l.get_enum("type", t.lr_schedule, names_of({LrScheduleType::Constant, LrScheduleType::Cosine}));
      l.get("minLrRatio", t.min_lr_ratio);
      l.get("warmupSteps", t.warmup_steps);
      require(t.min_lr_ratio >= 0 && t.min_lr_ratio <= 1, l, "minLrRatio", "must be in [0, 1]");
      require(t.warmup_steps >= 0, l, "warmupSteps", "must not be negative");
      if (t.lr_schedule == LrScheduleType::Constant && l.has("minLrRatio"))
        l.problem(l.path("minLrRatio"), "only applies to the cosine schedule");
    }
    if (f.has("privacy")) {
      Fields p(f.node("privacy"), f.path("privacy"), problems);
      auto& pr = t.privacy;
      pr.enabled = true;
      p.get("clipNorm", pr.clip_norm, true);
      if (p.has("clipNorm")) require(pr.clip_norm > 0 && std::isfinite(pr.clip_norm), p, "clipNorm", "must be a positive number");
      read_noise_settings(p, "training.privacy", pr.noise_multiplier, pr.target_epsilon, pr.delta, pr.insecure_noise_seed);
      // Each sample's gradient is clipped to clipNorm: a batch-level clip on top would change the
      // noise's scale relative to the signal and protect nothing more.
      if (f.has("gradClipNorm")) f.problem(f.path("gradClipNorm"), "does not apply with training.privacy, which clips every sample's gradient");
    }
  }

  // strategy
  {
    Fields f(s.node("strategy"), "spec.strategy", problems);
    auto& st = spec.strategy;
    f.get_enum("type", st.type, names_of({StrategyType::FedAvg, StrategyType::FedProx}));
    f.get("proximalMu", st.proximal_mu);
    if (st.type == StrategyType::FedAvg && f.has("proximalMu"))
      f.problem(f.path("proximalMu"), "only applies to fedprox");
    if (st.type == StrategyType::FedAvg) st.proximal_mu = 0;
    require(st.proximal_mu >= 0, f, "proximalMu", "must not be negative");
    if (f.has("muSchedule")) {
      Fields m(f.node("muSchedule"), f.path("muSchedule"), problems);
      m.get_enum("type", st.mu_schedule, names_of({MuScheduleType::Constant, MuScheduleType::Step, MuScheduleType::Adaptive}));
      m.get("everyRounds", st.mu_schedule_every_rounds);
      m.get("factor", st.mu_schedule_factor);
      require(st.mu_schedule_every_rounds >= 1, m, "everyRounds", "must be at least 1");
      require(st.mu_schedule_factor > 0, m, "factor", "must be positive");
      if (st.mu_schedule != MuScheduleType::Step)
        for (const char* k : {"everyRounds", "factor"})
          if (m.has(k)) m.problem(m.path(k), "only applies to the step schedule");
      if (st.type == StrategyType::FedAvg) m.problem(f.path("muSchedule"), "only applies to fedprox");
    }
    f.get("fractionFit", st.fraction_fit);
    f.get("minFitClients", st.min_fit_clients);
    f.get("minAvailableClients", st.min_available_clients);
    f.get("startTimeoutSeconds", st.start_timeout_seconds);
    f.get("roundTimeoutSeconds", st.round_timeout_seconds);
    f.get("maxRoundAttempts", st.max_round_attempts);
    f.get("maxUpdateNorm", st.max_update_norm);
    require(st.max_update_norm > 0 && std::isfinite(st.max_update_norm), f, "maxUpdateNorm", "must be a positive number");
    if (f.has("privacy") && !f.has("minFitClients")) st.min_fit_clients = 1;  // no quorum under privacy
    require(st.fraction_fit > 0 && st.fraction_fit <= 1, f, "fractionFit", "must be in (0, 1]");
    require(st.min_fit_clients >= 1, f, "minFitClients", "must be at least 1");
    require(st.min_available_clients >= st.min_fit_clients, f, "minAvailableClients", "must be at least minFitClients");
    require(st.start_timeout_seconds > 0, f, "startTimeoutSeconds", "must be positive");
    require(st.round_timeout_seconds > 0, f, "roundTimeoutSeconds", "must be positive");
    require(st.max_round_attempts >= 1, f, "maxRoundAttempts", "must be at least 1");
    if (!spec.clients.empty() && st.min_available_clients > static_cast<int>(spec.clients.size()))
      f.problem(f.path("minAvailableClients"), std::to_string(st.min_available_clients) + " exceeds the " +
                                                   std::to_string(spec.clients.size()) + " clients listed");
    read_aggregation(f, st, problems);
    if (f.has("privacy")) read_privacy(f, spec, st, problems);
  }

  // policy
  {
    Fields f(s.node("policy"), "spec.policy", problems);
    auto& p = spec.policy;
    f.get("type", p.type);
    f.get("pretrained", p.pretrained);
    f.get_list("train", p.train);
    if (f.has("config")) {
      if (!f.node("config").IsMap()) f.problem(f.path("config"), "must be a mapping");
      else p.config = yaml_to_ordered_json(f.node("config"));
    }
    if (p.type != "flow-matching-mlp" && p.type != "smolvla")
      f.problem(f.path("type"), "must be one of flow-matching-mlp, smolvla (got '" + p.type + "')");
  }

  // checkpoints
  {
    Fields f(s.node("checkpoints"), "spec.checkpoints", problems);
    f.get("everyRounds", spec.checkpoints.every_rounds);
    f.get("keepLast", spec.checkpoints.keep_last);
    f.get("signingKeyFile", spec.checkpoints.signing_key_file);
    f.get("signingKeySecret", spec.checkpoints.signing_key_secret);
    f.get("keepUpdates", spec.checkpoints.keep_updates);
    if (spec.checkpoints.keep_updates && spec.strategy.privacy.enabled)
      f.problem(f.path("keepUpdates"), "cannot recompute a round under spec.strategy.privacy (its sample and noise are never stored)");
    if (spec.evaluation.contribution_scores.any() && (spec.strategy.privacy.enabled || spec.strategy.asynchronous.enabled))
      problems.push_back("spec.evaluation.contributionScores: " +
                         std::string(spec.strategy.privacy.enabled
                                         ? "scores of single clients' updates would undo spec.strategy.privacy's protection"
                                         : "applies to synchronous rounds, not spec.strategy.asynchronous"));
    if (spec.checkpoints.keep_updates && spec.strategy.asynchronous.enabled)
      f.problem(f.path("keepUpdates"), "is for synchronous rounds; spec.strategy.asynchronous folds rebased updates");
    if (!spec.checkpoints.signing_key_file.empty() && !spec.checkpoints.signing_key_secret.empty())
      f.problem(f.path("signingKeySecret"), "set either signingKeyFile or signingKeySecret");
    require(spec.checkpoints.every_rounds >= 1, f, "everyRounds", "must be at least 1");
    require(spec.checkpoints.keep_last >= 0, f, "keepLast", "must not be negative (0 keeps all)");
    // The updates buffered towards the next version are kept on disk against the latest
    // checkpoint; one that is older would leave versions that no file can rebuild.
    if (spec.strategy.asynchronous.enabled && spec.checkpoints.every_rounds != 1)
      f.problem(f.path("everyRounds"), "must be 1 with spec.strategy.asynchronous, so that a resumed run loses no accepted update");
  }

  // transport
  {
    Fields f(s.node("transport"), "spec.transport", problems);
    auto& t = spec.transport;
    for (auto [key, target] : {std::pair<const char*, uint64_t*>{"chunkSize", &t.chunk_bytes}, {"maxMessageSize", &t.max_message_bytes}}) {
      std::string q;
      f.get(key, q);
      if (!q.empty() && !parse_bytes(q, *target))
        f.problem(f.path(key), "must be a byte count or quantity such as 4Mi (got '" + q + "')");
    }
    f.get("transferAttempts", t.transfer_attempts);
    if (f.has("compression")) {
      auto& c = t.compression;
      Fields cf(f.node("compression"), f.path("compression"), problems);
      cf.get_enum("codec", c.codec.kind, names_of({CodecKind::None, CodecKind::Bf16, CodecKind::Int8, CodecKind::TopK}));
      cf.get("errorFeedback", c.error_feedback);
      if (c.codec.kind == CodecKind::Int8) {
        c.codec.block_size = 4096;
        cf.get("blockSize", c.codec.block_size);
        require(c.codec.block_size >= 64 && c.codec.block_size <= 65536, cf, "blockSize", "must be between 64 and 65536");
      } else if (cf.has("blockSize")) {
        cf.problem(cf.path("blockSize"), "applies only with codec: int8");
      }
      if (c.codec.kind == CodecKind::TopK) {
        c.codec.fraction = 0.01;
        cf.get("fraction", c.codec.fraction);
        require(c.codec.fraction > 0 && c.codec.fraction <= 1, cf, "fraction", "must be in (0, 1]");
      } else if (cf.has("fraction")) {
        cf.problem(cf.path("fraction"), "applies only with codec: topk");
      }
      if (!c.codec.active() && cf.has("errorFeedback")) cf.problem(cf.path("errorFeedback"), "applies only with a codec");
      if (c.codec.active() && spec.strategy.asynchronous.enabled)
        cf.problem(cf.path("codec"), "does not apply with spec.strategy.asynchronous yet: an update is decoded against the global it was trained from, which FedBuff does not keep");
      if (c.codec.active() && spec.strategy.privacy.enabled && spec.strategy.privacy.clip_on == ClipLocation::Worker)
        cf.problem(cf.path("codec"), "needs spec.strategy.privacy.clipOn: server: decoding can lengthen an update the worker clipped, and the sensitivity bounds what the aggregator adds");
    }
    require(t.chunk_bytes >= 4096 && t.chunk_bytes <= (64ull << 20), f, "chunkSize", "must be between 4Ki and 64Mi");
    require(t.max_message_bytes >= t.chunk_bytes + 4096, f, "maxMessageSize", "must exceed chunkSize by at least 4Ki");
    require(t.transfer_attempts >= 1, f, "transferAttempts", "must be at least 1");
    if (f.has("tls")) {
      Fields tf(f.node("tls"), f.path("tls"), problems);
      tf.get("secretName", t.tls.secret_name);
      tf.get("caFile", t.tls.ca_file);
      tf.get("certFile", t.tls.cert_file);
      tf.get("keyFile", t.tls.key_file);
      tf.get("mutual", t.tls.mutual);
      tf.get("serverName", t.tls.server_name);
      const bool any_file = !t.tls.ca_file.empty() || !t.tls.cert_file.empty() || !t.tls.key_file.empty();
      if (!t.tls.secret_name.empty()) {
        for (const char* k : {"caFile", "certFile", "keyFile"})
          if (tf.has(k)) tf.problem(tf.path(k), "set either secretName or the three files");
      } else if (any_file) {
        // caFile alone is a client's view (a joined remote client verifies the aggregator with it);
        // the aggregator's own certificate and key come together, and with the CA.
        if (t.tls.ca_file.empty()) tf.problem(tf.path("caFile"), "is required with the other TLS files");
        if (t.tls.cert_file.empty() != t.tls.key_file.empty())
          tf.problem(tf.path(t.tls.cert_file.empty() ? "certFile" : "keyFile"), "is required with the other TLS files");
      } else if (!t.tls.mutual) {
        tf.problem(tf.path("mutual"), "a tls block needs secretName, the three files, or mutual: true (certificates issued by zk0 run or the operator)");
      }
    }
    if (f.has("join")) {
      auto& j = t.join;
      Fields jf(f.node("join"), f.path("join"), problems);
      jf.get("caKeyFile", j.ca_key_file);
      jf.get("tokenKeyFile", j.token_key_file);
      jf.get("caSecret", j.ca_secret);
      jf.get("tokenTtlSeconds", j.token_ttl_seconds);
      jf.get("certificateTtlSeconds", j.certificate_ttl_seconds);
      require(j.token_ttl_seconds >= 60, jf, "tokenTtlSeconds", "must be at least 60");
      require(j.certificate_ttl_seconds >= 3600, jf, "certificateTtlSeconds", "must be at least 3600");
      if (j.ca_key_file.empty() != j.token_key_file.empty())
        jf.problem(jf.path(j.ca_key_file.empty() ? "caKeyFile" : "tokenKeyFile"), "is required with the other join file");
      if (j.has_files() && !t.tls.has_files())
        jf.problem(jf.path("caKeyFile"), "needs spec.transport.tls's caFile, certFile and keyFile (the CA it signs for)");
      if (!j.ca_secret.empty() && j.has_files()) jf.problem(jf.path("caSecret"), "set either caSecret (a cluster) or the two key files");
      if (!j.ca_secret.empty() && t.tls.has_files())
        jf.problem(jf.path("caSecret"), "goes with spec.transport.tls.secretName or mutual: true (the operator mounts both Secrets)");
      if (!spec.has_remote_clients()) jf.problem(f.path("join"), "applies only when a client is remote");
    }
    if (f.has("expose")) {
      auto& e = t.expose;
      Fields ef(f.node("expose"), f.path("expose"), problems);
      ef.get_enum("type", e.type, names_of({ExposeType::kNodePort, ExposeType::kLoadBalancer}));
      ef.get("nodePort", e.node_port);
      ef.get("address", e.address);
      // The API server's default service-node-port-range: a port outside it is refused there,
      // where the run's author would not see why.
      if (ef.has("nodePort") && (e.node_port < 30000 || e.node_port > 32767))
        ef.problem(ef.path("nodePort"), "must be in 30000-32767, the cluster's node port range (got " + std::to_string(e.node_port) + ")");
      if (!e.address.empty() && !valid_host_port(e.address))
        ef.problem(ef.path("address"), "must be HOST:PORT, the address robot owners dial (got '" + e.address + "')");
      if (!spec.has_remote_clients()) ef.problem(f.path("expose"), "applies only when a client is remote");
    }
  }

  // Remote clients authenticate with the certificates they get when they join.
  if (spec.has_remote_clients() && !spec.transport.tls.mutual)
    problems.push_back("spec.transport.tls.mutual: must be true when a client is remote (remote clients prove who they are with "
                       "the certificate they get at zk0 join)");
  if (spec.has_remote_clients() && !spec.transport.tls.cert_file.empty() && !spec.transport.join.has_files())
    problems.push_back("spec.transport.join: caKeyFile and tokenKeyFile are required for remote clients with TLS files "
                       "(zk0 run issues them itself when spec.transport.tls is only mutual: true)");

  // Under mutual TLS with files, every client names its own certificate: one shared certificate
  // would let any client register as any other.
  if (spec.transport.tls.mutual && spec.transport.tls.has_files())
    for (size_t i = 0; i < spec.clients.size(); ++i)
      if (!spec.clients[i].remote && spec.clients[i].tls.cert_file.empty() && spec.clients[i].tls.secret_name.empty())
        problems.push_back("spec.clients[" + std::to_string(i) + "].tls: certFile and keyFile are required with mutual TLS (each client's own certificate)");
  for (size_t i = 0; i < spec.clients.size(); ++i)
    if (!spec.clients[i].tls.empty() && !spec.transport.tls.mutual)
      problems.push_back("spec.clients[" + std::to_string(i) + "].tls: only applies with spec.transport.tls.mutual");

  // aggregator (cluster)
  if (s.has("aggregator")) {
    Fields f(s.node("aggregator"), "spec.aggregator", problems);
    auto& a = spec.aggregator;
    a.resources = read_resources(f, false, problems);
    a.pod = read_placement(f, problems);
    if (f.has("storage")) {
      Fields sf(f.node("storage"), f.path("storage"), problems);
      sf.get("size", a.storage_size);
      sf.get("storageClassName", a.storage_class);
      if (!valid_quantity(a.storage_size)) sf.problem(sf.path("size"), "must be a quantity such as 10Gi (got '" + a.storage_size + "')");
    }
  }

  // runPolicy (cluster)
  {
    Fields f(s.node("runPolicy"), "spec.runPolicy", problems);
    auto& r = spec.run_policy;
    f.get("backoffLimit", r.backoff_limit);
    f.get("activeDeadlineSeconds", r.active_deadline_seconds);
    f.get("ttlSecondsAfterFinished", r.ttl_seconds_after_finished);
    f.get("suspend", r.suspend);
    require(r.backoff_limit >= 0, f, "backoffLimit", "must not be negative");
    require(r.active_deadline_seconds >= 0, f, "activeDeadlineSeconds", "must not be negative (0 = none)");
    require(r.ttl_seconds_after_finished >= -1, f, "ttlSecondsAfterFinished", "must be -1 (keep) or more");
  }

  if (s.has("hubTokenSecret")) {
    Fields f(s.node("hubTokenSecret"), "spec.hubTokenSecret", problems);
    SecretKeyRef ref{"", "token"};
    f.get("name", ref.name, true);
    f.get("key", ref.key);
    spec.hub_token_secret = ref;
  }
  }
  if (!problems.empty()) throw SpecError(problems);
  return spec;
}

}  // namespace

FederationSpec load_spec(const std::string& path) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const std::exception& e) {
    throw SpecError({e.what()});
  }
  return parse_spec(text);
}

namespace {

void emit_dataset(YAML::Node n, const DatasetSpec& d) {
  if (!d.path.empty()) n["path"] = d.path;
  if (d.volume_claim) {
    n["volumeClaim"]["claimName"] = d.volume_claim->claim_name;
    if (!d.volume_claim->sub_path.empty()) n["volumeClaim"]["subPath"] = d.volume_claim->sub_path;
  }
  if (!d.repo_id.empty()) {
    n["repoId"] = d.repo_id;
    n["revision"] = d.revision;
  }
  if (d.synthetic) {
    n["synthetic"]["task"] = d.synthetic->task;
    n["synthetic"]["episodes"] = d.synthetic->episodes;
    n["synthetic"]["episodeLength"] = d.synthetic->episode_length;
    n["synthetic"]["seed"] = d.synthetic->seed;
  }
  if (!d.episodes.empty()) {
    n["episodes"] = d.episodes;
    n["episodes"].SetStyle(YAML::EmitterStyle::Flow);
  }
  if (d.partition) {
    YAML::Node p = n["partition"];
    p["clients"] = d.partition->clients;
    p["index"] = d.partition->index;
    p["by"] = to_string(d.partition->by);
    if (d.partition->by == PartitionScheme::Dirichlet) p["alpha"] = d.partition->alpha;
    p["seed"] = d.partition->seed;
    p.SetStyle(YAML::EmitterStyle::Flow);
  }
}

void emit_resources(YAML::Node parent, const ResourcesSpec& r) {
  if (r.cpu > 0) parent["resources"]["cpu"] = r.cpu;
  if (r.gpu > 0) parent["resources"]["gpu"] = r.gpu;
  if (!r.memory.empty()) parent["resources"]["memory"] = r.memory;
}

void emit_placement(YAML::Node parent, const PodPlacementSpec& p) {
  if (!p.node_selector.empty()) parent["pod"]["nodeSelector"] = json_to_yaml(p.node_selector);
  if (!p.tolerations.empty()) parent["pod"]["tolerations"] = json_to_yaml(p.tolerations);
  if (!p.affinity.empty()) parent["pod"]["affinity"] = json_to_yaml(p.affinity);
  if (!p.overrides.empty()) parent["pod"]["overrides"] = json_to_yaml(p.overrides);
}

std::string quantity(uint64_t bytes) {
  if (bytes % (1ull << 20) == 0) return std::to_string(bytes >> 20) + "Mi";
  if (bytes % (1ull << 10) == 0) return std::to_string(bytes >> 10) + "Ki";
  return std::to_string(bytes);
}

}  // namespace

std::string to_yaml(const FederationSpec& spec) {
  YAML::Node root;
  root["apiVersion"] = "zk0.io/v1alpha1";
  root["kind"] = "FederationRun";
  root["metadata"]["name"] = spec.name;
  if (!spec.namespace_.empty()) root["metadata"]["namespace"] = spec.namespace_;
  YAML::Node s = root["spec"];
  s["rounds"] = spec.rounds;
  s["outputDir"] = spec.output_dir;
  for (const auto& c : spec.clients) {
    YAML::Node cn;
    cn["name"] = c.name;
    if (c.remote) {
      cn["remote"] = true;
      s["clients"].push_back(cn);
      continue;
    }
    emit_dataset(cn["dataset"], c.dataset);
    emit_resources(cn, c.resources);
    emit_placement(cn, c.pod);
    if (!c.tls.secret_name.empty()) cn["tls"]["secretName"] = c.tls.secret_name;
    if (!c.tls.cert_file.empty()) {
      cn["tls"]["certFile"] = c.tls.cert_file;
      cn["tls"]["keyFile"] = c.tls.key_file;
    }
    s["clients"].push_back(cn);
  }
  const auto& e = spec.evaluation;
  const auto emit_sampling = [](YAML::Node n, const EvaluationSetSpec& set) {
    n["mode"] = to_string(set.mode);
    if (set.mode == EvalMode::Quick) n["batches"] = set.batches;
    n["batchSize"] = set.batch_size;
    n["seed"] = set.seed;
  };
  // One set called heldout is what the inline form says (in the order runs' fingerprints hold).
  if (e.sets.size() == 1 && e.sets[0].name == EvaluationSetSpec{}.name) {
    emit_dataset(s["evaluation"]["dataset"], e.sets[0].dataset);
    s["evaluation"]["everyRounds"] = e.every_rounds;
    emit_sampling(s["evaluation"], e.sets[0]);
  } else {
    for (const auto& set : e.sets) {
      YAML::Node n;
      n["name"] = set.name;
      emit_dataset(n["dataset"], set.dataset);
      emit_sampling(n, set);
      s["evaluation"]["sets"].push_back(n);
    }
    s["evaluation"]["everyRounds"] = e.every_rounds;
  }
  if (e.contribution_scores.first_order) s["evaluation"]["contributionScores"]["firstOrder"] = true;
  if (e.contribution_scores.leave_one_out) s["evaluation"]["contributionScores"]["leaveOneOut"] = true;
  const auto& t = spec.training;
  YAML::Node tn = s["training"];
  tn["localSteps"] = t.local_steps;
  tn["batchSize"] = t.batch_size;
  tn["optimizer"]["type"] = "adamw";
  tn["optimizer"]["lr"] = t.learning_rate;
  tn["optimizer"]["betas"].push_back(t.betas[0]);
  tn["optimizer"]["betas"].push_back(t.betas[1]);
  tn["optimizer"]["betas"].SetStyle(YAML::EmitterStyle::Flow);
  tn["optimizer"]["eps"] = t.eps;
  tn["optimizer"]["weightDecay"] = t.weight_decay;
  tn["optimizer"]["state"] = to_string(t.optimizer_state);
  if (t.privacy.enabled) {
    YAML::Node pn = tn["privacy"];
    pn["clipNorm"] = t.privacy.clip_norm;
    if (t.privacy.noise_multiplier > 0) pn["noiseMultiplier"] = t.privacy.noise_multiplier;
    if (t.privacy.target_epsilon > 0) pn["targetEpsilon"] = t.privacy.target_epsilon;
    pn["delta"] = t.privacy.delta;
    if (t.privacy.insecure_noise_seed) pn["insecureNoiseSeed"] = *t.privacy.insecure_noise_seed;
  } else {
    tn["gradClipNorm"] = t.grad_clip_norm;
  }
  tn["lrSchedule"]["type"] = to_string(t.lr_schedule);
  if (t.lr_schedule == LrScheduleType::Cosine) tn["lrSchedule"]["minLrRatio"] = t.min_lr_ratio;
  tn["lrSchedule"]["warmupSteps"] = t.warmup_steps;
  tn["precision"] = to_string(t.precision);
  tn["seed"] = t.seed;
  const auto& st = spec.strategy;
  YAML::Node sn = s["strategy"];
  sn["type"] = to_string(st.type);
  if (st.type == StrategyType::FedProx) {
    sn["proximalMu"] = st.proximal_mu;
    sn["muSchedule"]["type"] = to_string(st.mu_schedule);
    if (st.mu_schedule == MuScheduleType::Step) {
      sn["muSchedule"]["everyRounds"] = st.mu_schedule_every_rounds;
      sn["muSchedule"]["factor"] = st.mu_schedule_factor;
    }
  }
  if (!st.privacy.enabled) {
    sn["fractionFit"] = st.fraction_fit;
    sn["minFitClients"] = st.min_fit_clients;
  }
  sn["minAvailableClients"] = st.min_available_clients;
  sn["startTimeoutSeconds"] = st.start_timeout_seconds;
  sn["roundTimeoutSeconds"] = st.round_timeout_seconds;
  if (!st.asynchronous.enabled) sn["maxRoundAttempts"] = st.max_round_attempts;
  sn["maxUpdateNorm"] = st.max_update_norm;
  const auto& ag = st.aggregation;
  sn["aggregation"]["rule"] = to_string(ag.rule);
  if (ag.rule == AggregationRule::Krum || ag.rule == AggregationRule::MultiKrum || ag.rule == AggregationRule::Bulyan)
    sn["aggregation"]["byzantine"] = ag.byzantine;
  if (ag.rule == AggregationRule::MultiKrum) sn["aggregation"]["select"] = ag.select;
  if (ag.rule == AggregationRule::TrimmedMean) sn["aggregation"]["trimFraction"] = ag.trim_fraction;
  const auto& so = st.server_optimizer;
  if (so.type != ServerOptimizerType::None) {
    YAML::Node on = sn["serverOptimizer"];
    on["type"] = to_string(so.type);
    on["lr"] = so.learning_rate;
    if (so.type == ServerOptimizerType::AvgM) on["momentum"] = so.momentum;
    if (so.type == ServerOptimizerType::Adam || so.type == ServerOptimizerType::Yogi) {
      on["betas"].push_back(so.betas[0]);
      on["betas"].push_back(so.betas[1]);
      on["betas"].SetStyle(YAML::EmitterStyle::Flow);
    }
    if (so.type != ServerOptimizerType::AvgM) on["tau"] = so.tau;
  }
  if (st.asynchronous.enabled) {
    sn["asynchronous"]["maxStaleness"] = st.asynchronous.max_staleness;
    sn["asynchronous"]["stalenessWeight"] = to_string(st.asynchronous.staleness_weight);
  }
  if (st.clipping.norm > 0) sn["clipping"]["norm"] = st.clipping.norm;
  if (st.clipping.quantile > 0) sn["clipping"]["quantile"] = st.clipping.quantile;
  if (const auto& pr = st.privacy; pr.enabled) {
    YAML::Node pn = sn["privacy"];
    if (pr.clip_norm > 0) pn["clipNorm"] = pr.clip_norm;
    if (pr.adaptive.enabled) {
      pn["adaptiveClipping"]["initialNorm"] = pr.adaptive.initial_norm;
      pn["adaptiveClipping"]["targetQuantile"] = pr.adaptive.target_quantile;
      pn["adaptiveClipping"]["learningRate"] = pr.adaptive.learning_rate;
      pn["adaptiveClipping"]["countNoiseStd"] = pr.adaptive.count_noise_std;
    }
    pn["clipOn"] = to_string(pr.clip_on);
    pn["samplingRate"] = pr.sampling_rate;
    if (pr.noise_multiplier > 0) pn["noiseMultiplier"] = pr.noise_multiplier;
    if (pr.target_epsilon > 0) pn["targetEpsilon"] = pr.target_epsilon;
    pn["delta"] = pr.delta;
    if (pr.insecure_noise_seed) pn["insecureNoiseSeed"] = *pr.insecure_noise_seed;
  }
  YAML::Node pn = s["policy"];
  pn["type"] = spec.policy.type;
  if (!spec.policy.config.empty()) pn["config"] = json_to_yaml(spec.policy.config);
  if (!spec.policy.pretrained.empty()) pn["pretrained"] = spec.policy.pretrained;
  if (!spec.policy.train.empty()) pn["train"] = spec.policy.train;
  s["checkpoints"]["everyRounds"] = spec.checkpoints.every_rounds;
  s["checkpoints"]["keepLast"] = spec.checkpoints.keep_last;
  if (!spec.checkpoints.signing_key_file.empty()) s["checkpoints"]["signingKeyFile"] = spec.checkpoints.signing_key_file;
  if (!spec.checkpoints.signing_key_secret.empty()) s["checkpoints"]["signingKeySecret"] = spec.checkpoints.signing_key_secret;
  if (spec.checkpoints.keep_updates) s["checkpoints"]["keepUpdates"] = true;
  YAML::Node xn = s["transport"];
  xn["chunkSize"] = quantity(spec.transport.chunk_bytes);
  xn["maxMessageSize"] = quantity(spec.transport.max_message_bytes);
  xn["transferAttempts"] = spec.transport.transfer_attempts;
  if (const auto& c = spec.transport.compression; c.codec.active()) {
    xn["compression"]["codec"] = to_string(c.codec.kind);
    if (c.codec.kind == CodecKind::Int8) xn["compression"]["blockSize"] = c.codec.block_size;
    if (c.codec.kind == CodecKind::TopK) xn["compression"]["fraction"] = c.codec.fraction;
    xn["compression"]["errorFeedback"] = c.error_feedback;
  }
  if (!spec.transport.tls.secret_name.empty()) {
    xn["tls"]["secretName"] = spec.transport.tls.secret_name;
    xn["tls"]["mutual"] = spec.transport.tls.mutual;
  } else if (spec.transport.tls.has_files()) {
    xn["tls"]["caFile"] = spec.transport.tls.ca_file;
    xn["tls"]["certFile"] = spec.transport.tls.cert_file;
    xn["tls"]["keyFile"] = spec.transport.tls.key_file;
    xn["tls"]["mutual"] = spec.transport.tls.mutual;
  } else if (spec.transport.tls.mutual) {
    xn["tls"]["mutual"] = true;
  }
  if (!spec.transport.tls.server_name.empty()) xn["tls"]["serverName"] = spec.transport.tls.server_name;
  if (spec.has_remote_clients()) {
    const auto& j = spec.transport.join;
    if (j.has_files()) {
      xn["join"]["caKeyFile"] = j.ca_key_file;
      xn["join"]["tokenKeyFile"] = j.token_key_file;
    }
    if (!j.ca_secret.empty()) xn["join"]["caSecret"] = j.ca_secret;
    xn["join"]["tokenTtlSeconds"] = j.token_ttl_seconds;
    xn["join"]["certificateTtlSeconds"] = j.certificate_ttl_seconds;
    const auto& e = spec.transport.expose;
    xn["expose"]["type"] = to_string(e.type);
    if (e.node_port) xn["expose"]["nodePort"] = e.node_port;
    if (!e.address.empty()) xn["expose"]["address"] = e.address;
  }
  const auto& a = spec.aggregator;
  YAML::Node an = s["aggregator"];
  emit_resources(an, a.resources);
  emit_placement(an, a.pod);
  an["storage"]["size"] = a.storage_size;
  if (!a.storage_class.empty()) an["storage"]["storageClassName"] = a.storage_class;
  const auto& r = spec.run_policy;
  s["runPolicy"]["backoffLimit"] = r.backoff_limit;
  s["runPolicy"]["activeDeadlineSeconds"] = r.active_deadline_seconds;
  s["runPolicy"]["ttlSecondsAfterFinished"] = r.ttl_seconds_after_finished;
  s["runPolicy"]["suspend"] = r.suspend;
  if (spec.hub_token_secret) {
    s["hubTokenSecret"]["name"] = spec.hub_token_secret->name;
    s["hubTokenSecret"]["key"] = spec.hub_token_secret->key;
  }
  if (spec.simulation) s["simulation"]["concurrency"] = spec.simulation->concurrency;
  YAML::Emitter out;
  out.SetDoublePrecision(17);
  out << root;
  return std::string(out.c_str()) + "\n";
}

std::vector<std::string> cluster_only_fields(const FederationSpec& spec) {
  std::vector<std::string> fields;
  for (size_t i = 0; i < spec.clients.size(); ++i) {
    const auto& c = spec.clients[i];
    const std::string p = "spec.clients[" + std::to_string(i) + "]";
    if (!c.pod.empty()) fields.push_back(p + ".pod");
    if (!c.resources.memory.empty()) fields.push_back(p + ".resources.memory");
  }
  const auto& a = spec.aggregator;
  const AggregatorSpec default_aggregator;
  // resources.cpu counts here too: it sets the aggregator's compute threads.
  if (!a.resources.memory.empty() || !a.pod.empty() || a.storage_size != default_aggregator.storage_size ||
      !a.storage_class.empty())
    fields.push_back("spec.aggregator");
  const RunPolicySpec default_policy;
  const auto& r = spec.run_policy;
  if (r.backoff_limit != default_policy.backoff_limit || r.active_deadline_seconds || r.ttl_seconds_after_finished != -1 || r.suspend)
    fields.push_back("spec.runPolicy");
  if (spec.hub_token_secret) fields.push_back("spec.hubTokenSecret");
  if (!spec.transport.join.ca_secret.empty()) fields.push_back("spec.transport.join.caSecret");
  const ExposeSpec default_expose;
  const auto& e = spec.transport.expose;
  if (e.type != default_expose.type || e.node_port || !e.address.empty()) fields.push_back("spec.transport.expose");
  return fields;
}

std::string resume_fingerprint(const FederationSpec& spec) {
  // How a run is operated (runPolicy: suspend, deadlines; where and on what its pods run; how
  // its bytes travel and who signs what; how many checkpoints are kept) does not change what it
  // computes, so a suspended or moved run resumes from its checkpoint. Everything else does.
  FederationSpec copy = spec;
  copy.run_policy = RunPolicySpec{};
  copy.aggregator = AggregatorSpec{};
  copy.transport = TransportSpec{};
  copy.hub_token_secret.reset();
  copy.simulation.reset();  // the same updates either way (tests/simulation_test.cpp)
  copy.namespace_.clear();
  copy.checkpoints.keep_last = CheckpointSpec{}.keep_last;
  copy.checkpoints.signing_key_file.clear();
  copy.checkpoints.signing_key_secret.clear();
  copy.checkpoints.keep_updates = false;
  copy.evaluation.contribution_scores = ContributionScoresSpec{};
  for (auto& c : copy.clients) {
    c.pod = PodPlacementSpec{};
    c.resources = ResourcesSpec{};
    c.tls = ClientTlsSpec{};
  }
  copy.rounds = 1;
  const std::string text = to_yaml(copy);
  return to_hex(sha256(text.data(), text.size()));
}

int simulation_concurrency(const FederationSpec& spec, const std::string& flag) {
  if (local_clients(spec) == 0) throw SpecError({"spec.clients: every client is remote: there is nothing to simulate"});
  if (flag.empty()) return spec.simulation ? spec.simulation->concurrency : 1;
  const bool whole = flag.size() < 7 && flag.find_first_not_of("0123456789") == std::string::npos;
  const int concurrency = whole ? std::stoi(flag) : 0;
  if (concurrency < 1) throw SpecError({"--concurrency: must be a whole number of at least 1 (got '" + flag + "')"});
  if (const std::string p = concurrency_problem(spec, concurrency); !p.empty()) throw SpecError({"--concurrency: " + p});
  return concurrency;
}

}  // namespace zk0
