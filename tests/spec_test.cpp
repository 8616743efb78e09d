// FederationRun parsing and validation: good files parse to the values they say, bad ones fail
// with every problem named by its field path, and the resolved YAML reads back identically.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/spec/federation_spec.h"
#include "core/spec/membership_spec.h"
#include "core/util/fs.h"
#include "core/util/yaml_json.h"
#include "support/maximal_specs.h"
#include "support/test_support.h"

#include <functional>
#include <yaml-cpp/yaml.h>

using namespace zk0;

namespace {

const std::string kMinimal = R"(
apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {name: minimal}
spec:
  rounds: 3
  clients:
    - name: a
      dataset: {repoId: shaunkirby/record-test}
    - name: b
      dataset: {path: /data/b, episodes: [0, 2, 4]}
  evaluation:
    dataset: {repoId: Hupy440/Two_Cubes_and_Two_Buckets_v2, revision: v2.1}
)";

}  // namespace

TEST(Spec, MinimalFileGetsDocumentedDefaults) {
  const FederationSpec s = parse_spec(kMinimal);
  EXPECT_EQ(s.name, "minimal");
  EXPECT_EQ(s.rounds, 3);
  ASSERT_EQ(s.clients.size(), 2u);
  EXPECT_EQ(s.clients[0].dataset.repo_id, "shaunkirby/record-test");
  EXPECT_EQ(s.clients[0].dataset.revision, "main");
  EXPECT_EQ(s.clients[1].dataset.episodes, (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(s.evaluation.sets.at(0).dataset.revision, "v2.1");
  EXPECT_EQ(s.training.local_steps, 100);
  EXPECT_DOUBLE_EQ(s.training.learning_rate, 1e-4);
  EXPECT_DOUBLE_EQ(s.training.betas[1], 0.95);
  EXPECT_DOUBLE_EQ(s.training.grad_clip_norm, 10);
  EXPECT_EQ(s.strategy.type, StrategyType::FedProx);
  EXPECT_DOUBLE_EQ(s.strategy.proximal_mu, 0.01);
  EXPECT_EQ(s.transport.chunk_bytes, 4u << 20);
  EXPECT_EQ(s.checkpoints.keep_last, 3);
}

TEST(Spec, ResolvedYamlReadsBackToTheSameSpec) {
  const FederationSpec s = parse_spec(kMinimal);
  const std::string once = to_yaml(s);
  const std::string twice = to_yaml(parse_spec(once));
  EXPECT_EQ(once, twice);
  EXPECT_EQ(resume_fingerprint(s), resume_fingerprint(parse_spec(once)));
}

TEST(Spec, ExamplesAreValid) {
  size_t runs = 0, memberships = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(std::string(ZK0_SOURCE_DIR) + "/examples")) {
    if (entry.path().extension() != ".yaml") continue;
    const YAML::Node first = YAML::LoadFile(entry.path().string());
    const std::string kind = first["kind"].as<std::string>("");
    if (kind == "FederationMembership") {
      EXPECT_NO_THROW(parse_membership(read_file(entry.path().string()))) << entry.path();
      ++memberships;
    }
    if (kind != "FederationRun") continue;  // e.g. k8s/certificate.yaml
    EXPECT_NO_THROW(load_spec(entry.path().string())) << entry.path();
    ++runs;
  }
  EXPECT_GE(runs, 4u);  // quickstart, smolvla-tiny, so100-smolvla, k8s/federationrun
  EXPECT_GE(memberships, 1u);
}

// The README's FederationRun blocks are what a reader copies first: each must validate.
TEST(Spec, ReadmeExamplesAreValid) {
  const std::string readme = read_file(std::string(ZK0_SOURCE_DIR) + "/README.md");
  size_t runs = 0;
  for (size_t at = readme.find("```yaml\n"); at != std::string::npos; at = readme.find("```yaml\n", at + 1)) {
    const size_t begin = at + 8, end = readme.find("```", begin);
    ASSERT_NE(end, std::string::npos) << "an unclosed yaml block in README.md";
    const std::string block = readme.substr(begin, end - begin);
    if (block.find("kind: FederationMembership") != std::string::npos) {
      try {
        parse_membership(block);
      } catch (const SpecError& e) {
        ADD_FAILURE() << "README.md's FederationMembership at offset " << begin << ": " << e.what();
      }
      continue;
    }
    if (block.find("kind: FederationRun") == std::string::npos) continue;
    try {
      parse_spec(block);
    } catch (const SpecError& e) {
      ADD_FAILURE() << "README.md's FederationRun at offset " << begin << ": " << e.what();
    }
    ++runs;
  }
  EXPECT_GE(runs, 1u);
}

namespace {

// Every leaf (a scalar, or an empty list or map) of a document, by path.
void leaves(const nlohmann::json& j, const std::string& path, std::map<std::string, nlohmann::json>& out) {
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it) leaves(it.value(), path + "." + it.key(), out);
  } else if (j.is_array() && !j.empty()) {
    for (size_t i = 0; i < j.size(); ++i) leaves(j[i], path + "[" + std::to_string(i) + "]", out);
  } else {
    out[path] = j;
  }
}

}  // namespace

// Every field of the maximal specs comes back from the resolved YAML with the value it was
// given, and a second round trip changes nothing.
TEST(Spec, MaximalSpecsRoundTripFieldByField) {
  for (const char* text : test::kMaximalSpecs) {
    const FederationSpec spec = parse_spec(text);
    const std::string resolved = to_yaml(spec);
    EXPECT_EQ(to_yaml(parse_spec(resolved)), resolved);
    std::map<std::string, nlohmann::json> given, got;
    leaves(yaml_to_json(YAML::Load(text)), "", given);
    leaves(yaml_to_json(YAML::Load(resolved)), "", got);
    for (const auto& [path, value] : given) {
      auto it = got.find(path);
      ASSERT_NE(it, got.end()) << path << " was lost in the round trip";
      if (value.is_number()) EXPECT_DOUBLE_EQ(it->second.get<double>(), value.get<double>()) << path;
      else EXPECT_EQ(it->second, value) << path;
    }
  }
}

// evaluation's inline dataset is the set "heldout": written as one set of that name it is the same
// run; sets keep the spec's order (the first is the server loss) and every field of their own.
TEST(Spec, EvaluationSetsAndTheInlineFormAgree) {
  const std::string head = "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: r}\nspec:\n"
                           "  rounds: 3\n  clients: [{name: a, dataset: {path: /a}}]\n  strategy: {minFitClients: 1, minAvailableClients: 1}\n";
  const FederationSpec inline_form = parse_spec(head + "  evaluation: {dataset: {path: /e}, batches: 3, seed: 4}\n");
  const FederationSpec one_set = parse_spec(head + "  evaluation: {sets: [{name: heldout, dataset: {path: /e}, batches: 3, seed: 4}]}\n");
  EXPECT_EQ(to_yaml(one_set), to_yaml(inline_form));
  EXPECT_EQ(resume_fingerprint(one_set), resume_fingerprint(inline_form));
  const FederationSpec two = parse_spec(head +
                                        "  evaluation:\n    everyRounds: 2\n    sets:\n"
                                        "    - {name: own, dataset: {path: /e}}\n"
                                        "    - {name: sponsor-a, dataset: {path: /s}, mode: full, batchSize: 8, seed: 7}\n");
  ASSERT_EQ(two.evaluation.sets.size(), 2u);
  EXPECT_EQ(two.evaluation.sets[0].name, "own");
  EXPECT_EQ(two.evaluation.sets[0].field, "spec.evaluation.sets[0]");
  EXPECT_EQ(two.evaluation.sets[1].name, "sponsor-a");
  EXPECT_EQ(two.evaluation.sets[1].dataset.path, "/s");
  EXPECT_EQ(two.evaluation.sets[1].mode, EvalMode::Full);
  EXPECT_EQ(two.evaluation.sets[1].batch_size, 8);
  EXPECT_EQ(two.evaluation.sets[1].seed, 7u);
  EXPECT_EQ(two.evaluation.every_rounds, 2);
  EXPECT_EQ(inline_form.evaluation.sets.at(0).field, "spec.evaluation");
}

// What a remote owner is sent names no evaluation set and no place its data lives (a path, a
// claim, a Hub repository), and still reads back as a valid spec.
TEST(Spec, AClientsViewWithholdsTheEvaluationSets) {
  const FederationSpec spec = parse_spec(
      "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: r}\nspec:\n  rounds: 3\n"
      "  clients: [{name: a, remote: true}, {name: b, dataset: {path: /b}}]\n"
      "  transport: {tls: {mutual: true}}\n  strategy: {minFitClients: 1, minAvailableClients: 1}\n"
      "  evaluation:\n    contributionScores: {firstOrder: true}\n    sets:\n"
      "    - {name: own-heldout, dataset: {path: /srv/eval/own}}\n"
      "    - {name: sponsor-acme, dataset: {volumeClaim: {claimName: acme-eval, subPath: grasp}}, mode: full}\n"
      "    - {name: sponsor-hub, dataset: {repoId: acme/secret-eval, revision: v3}}\n");
  const std::string view = to_yaml(client_view(spec, "a"));
  for (const char* secret : {"own-heldout", "/srv/eval/own", "sponsor-acme", "acme-eval", "grasp", "sponsor-hub", "acme/secret-eval"})
    EXPECT_EQ(view.find(secret), std::string::npos) << secret << " reached the client's view:\n" << view;
  const FederationSpec read_back = parse_spec(view);
  ASSERT_EQ(read_back.evaluation.sets.size(), 1u);
  EXPECT_EQ(read_back.evaluation.sets[0].dataset.path, kWithheldDataset);
  EXPECT_TRUE(read_back.evaluation.contribution_scores.first_order);
}

// A restarted aggregator resumes only a run whose spec computes the same thing: how it is
// operated (rounds to go, suspend, deadlines, where and on what its pods run, transport, Secrets,
// retention) may change; anything that changes what is computed must not.
TEST(Spec, ResumeFingerprintIgnoresHowARunIsOperatedAndNothingElse) {
  const FederationSpec base = parse_spec(test::kMaximalSpecs[0]);
  const std::string fingerprint = resume_fingerprint(base);
  using Change = std::pair<const char*, std::function<void(FederationSpec&)>>;
  const std::vector<Change> operational = {
      {"rounds", [](FederationSpec& s) { s.rounds = 30; }},
      {"runPolicy.suspend", [](FederationSpec& s) { s.run_policy.suspend = !s.run_policy.suspend; }},
      {"runPolicy.backoffLimit", [](FederationSpec& s) { s.run_policy.backoff_limit = 9; }},
      {"runPolicy.activeDeadlineSeconds", [](FederationSpec& s) { s.run_policy.active_deadline_seconds = 99; }},
      {"runPolicy.ttlSecondsAfterFinished", [](FederationSpec& s) { s.run_policy.ttl_seconds_after_finished = 7; }},
      {"clients[].pod.nodeSelector", [](FederationSpec& s) { s.clients[0].pod.node_selector = {{"zone", "b"}}; }},
      {"clients[].pod.tolerations", [](FederationSpec& s) { s.clients[0].pod.tolerations = nlohmann::json::array(); }},
      {"clients[].pod.affinity", [](FederationSpec& s) { s.clients[0].pod.affinity = nlohmann::json::object(); }},
      {"clients[].pod.overrides", [](FederationSpec& s) { s.clients[0].pod.overrides = nlohmann::json::object(); }},
      {"clients[].resources", [](FederationSpec& s) { s.clients[0].resources = ResourcesSpec{8, 0, "64Gi"}; }},
      {"clients[].tls", [](FederationSpec& s) { s.clients[0].tls.cert_file = "/other.crt"; }},
      {"aggregator", [](FederationSpec& s) { s.aggregator.storage_size = "1Ti"; s.aggregator.resources.cpu = 16; }},
      {"transport", [](FederationSpec& s) { s.transport.chunk_bytes = 1 << 20; s.transport.tls.ca_file = "/other-ca.pem"; }},
      {"hubTokenSecret", [](FederationSpec& s) { s.hub_token_secret.reset(); }},
      {"checkpoints.keepLast", [](FederationSpec& s) { s.checkpoints.keep_last = 0; }},
      {"checkpoints.signingKeyFile", [](FederationSpec& s) { s.checkpoints.signing_key_file = "/other.key"; }},
      {"checkpoints.keepUpdates", [](FederationSpec& s) { s.checkpoints.keep_updates = true; }},
      {"metadata.namespace", [](FederationSpec& s) { s.namespace_ = "elsewhere"; }},
  };
  const std::vector<Change> computational = {
      {"clients[].name", [](FederationSpec& s) { s.clients[0].name = "renamed"; }},
      {"clients[].dataset", [](FederationSpec& s) { s.clients[0].dataset.episodes = {5}; }},
      {"clients (one more)", [](FederationSpec& s) { s.clients.push_back(s.clients[0]); s.clients.back().name = "extra"; }},
      {"evaluation.seed", [](FederationSpec& s) { s.evaluation.sets[0].seed += 1; }},
      {"evaluation.batches", [](FederationSpec& s) { s.evaluation.sets[0].batches += 1; }},
      {"evaluation.everyRounds", [](FederationSpec& s) { s.evaluation.every_rounds += 1; }},
      {"evaluation.sets (one more)", [](FederationSpec& s) {
         s.evaluation.sets.push_back(s.evaluation.sets[0]);
         s.evaluation.sets.back().name = "sponsor";
       }},
      {"training.localSteps", [](FederationSpec& s) { s.training.local_steps += 1; }},
      {"training.seed", [](FederationSpec& s) { s.training.seed += 1; }},
      {"training.optimizer.lr", [](FederationSpec& s) { s.training.learning_rate *= 2; }},
      {"training.optimizer.state", [](FederationSpec& s) { s.training.optimizer_state = OptimizerState::Reset; }},
      {"training.precision", [](FederationSpec& s) { s.training.precision = Precision::FP32; }},
      {"strategy.proximalMu", [](FederationSpec& s) { s.strategy.proximal_mu *= 2; }},
      {"strategy.fractionFit", [](FederationSpec& s) { s.strategy.fraction_fit = 0.5; }},
      {"strategy.minFitClients", [](FederationSpec& s) { s.strategy.min_fit_clients = 1; }},
      {"strategy.maxUpdateNorm", [](FederationSpec& s) { s.strategy.max_update_norm = 5; }},
      {"strategy.aggregation.rule", [](FederationSpec& s) { s.strategy.aggregation.rule = AggregationRule::Mean; }},
      {"strategy.clipping.quantile", [](FederationSpec& s) { s.strategy.clipping.quantile = 0.5; }},
      {"strategy.serverOptimizer.lr", [](FederationSpec& s) { s.strategy.server_optimizer.learning_rate = 0.5; }},
      {"strategy.asynchronous", [](FederationSpec& s) { s.strategy.asynchronous.enabled = true; }},
      {"policy.config", [](FederationSpec& s) { s.policy.config["hiddenDim"] = 9; }},
      {"policy.pretrained", [](FederationSpec& s) { s.policy.pretrained = "/models/y"; }},
      {"policy.train", [](FederationSpec& s) { s.policy.train = {"other"}; }},
      {"checkpoints.everyRounds", [](FederationSpec& s) { s.checkpoints.every_rounds = 2; }},
  };
  for (const auto& [field, change] : operational) {
    FederationSpec s = base;
    change(s);
    EXPECT_EQ(resume_fingerprint(s), fingerprint) << field << " must not block a resume";
  }
  for (const auto& [field, change] : computational) {
    FederationSpec s = base;
    change(s);
    EXPECT_NE(resume_fingerprint(s), fingerprint) << field << " changes what the run computes";
  }
}

struct BadCase {
  const char* what;
  const char* from;  // text in kMinimal to replace
  const char* to;
  const char* expected;  // must appear in the error
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.what; }

class SpecErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(SpecErrors, NamesTheFieldAndTheReason) {
  const BadCase& c = GetParam();
  std::string yaml = kMinimal;
  const size_t at = yaml.find(c.from);
  ASSERT_NE(at, std::string::npos) << c.from;
  yaml.replace(at, std::string(c.from).size(), c.to);
  const std::string err = test::spec_problems(yaml);
  EXPECT_NE(err.find(c.expected), std::string::npos) << "error was:\n" << err;
}

INSTANTIATE_TEST_SUITE_P(
    Bad, SpecErrors,
    ::testing::Values(
        BadCase{"dataset source missing", "{path: /data/b, episodes: [0, 2, 4]}", "{episodes: [1]}",
                "spec.clients[1].dataset: one of path, volumeClaim, repoId or synthetic is required"},
        BadCase{"two sources", "{repoId: shaunkirby/record-test}", "{repoId: a/b, path: /x}",
                "spec.clients[0].dataset: set only one of path, volumeClaim, repoId or synthetic"},
        BadCase{"unknown field", "  rounds: 3", "  rounds: 3\n  roundz: 4", "spec.roundz: unknown field"},
        BadCase{"unknown nested field", "{path: /data/b, episodes: [0, 2, 4]}", "{path: /data/b, epsiodes: [1]}",
                "spec.clients[1].dataset.epsiodes: unknown field"},
        BadCase{"wrong type", "rounds: 3", "rounds: three", "spec.rounds: cannot read 'three' as an integer"},
        BadCase{"zero rounds", "rounds: 3", "rounds: 0", "spec.rounds: must be at least 1"},
        BadCase{"kind", "kind: FederationRun", "kind: Job", "kind: must be FederationRun"},
        BadCase{"api version", "zk0.io/v1alpha1", "zk0.io/v2", "apiVersion: must be zk0.io/v1alpha1"},
        BadCase{"duplicate client", "- name: b", "- name: a", "spec.clients[1].name: 'a' is used by another client"},
        BadCase{"pod override of the containers", "{path: /data/b, episodes: [0, 2, 4]}",
                "{path: /data/b}\n      pod: {overrides: {spec: {containers: []}}}",
                "spec.clients[1].pod.overrides.spec.containers: may not be overridden"},
        BadCase{"pod override of zk0's own label", "{path: /data/b, episodes: [0, 2, 4]}",
                "{path: /data/b}\n      pod: {overrides: {metadata: {labels: {zk0.io/run: x}}}}",
                "spec.clients[1].pod.overrides.metadata.labels.zk0.io/run: is set by the operator"},
        BadCase{"update norm bound", "  clients:", "  strategy: {maxUpdateNorm: 0}\n  clients:",
                "spec.strategy.maxUpdateNorm: must be a positive number"},
        BadCase{"optimizer state", "  clients:", "  training: {optimizer: {state: sometimes}}\n  clients:",
                "spec.training.optimizer.state: must be one of keep, reset (got 'sometimes')"},
        BadCase{"empty tls block", "  clients:", "  transport: {tls: {}}\n  clients:",
                "spec.transport.tls.mutual: a tls block needs secretName, the three files, or mutual: true"},
        BadCase{"one tls file", "  clients:", "  transport: {tls: {certFile: s.pem}}\n  clients:",
                "spec.transport.tls.keyFile: is required with the other TLS files"},
        BadCase{"mutual tls without a client certificate", "  clients:",
                "  transport: {tls: {caFile: ca.pem, certFile: s.pem, keyFile: s.key, mutual: true}}\n  clients:",
                "spec.clients[0].tls: certFile and keyFile are required with mutual TLS"},
        BadCase{"client tls without mutual", "{path: /data/b, episodes: [0, 2, 4]}",
                "{path: /data/b}\n      tls: {certFile: b.pem, keyFile: b.key}",
                "spec.clients[1].tls: only applies with spec.transport.tls.mutual"},
        BadCase{"two signing keys", "  clients:", "  checkpoints: {signingKeyFile: k, signingKeySecret: s}\n  clients:",
                "spec.checkpoints.signingKeySecret: set either signingKeyFile or signingKeySecret"},
        BadCase{"client name", "- name: b", "- name: Bob_1", "spec.clients[1].name: must be lower-case"},
        BadCase{"repo id", "shaunkirby/record-test", "record-test", "spec.clients[0].dataset.repoId: must look like owner/name"},
        BadCase{"revision without hub", "{path: /data/b, episodes: [0, 2, 4]}", "{path: /data/b, revision: v1}",
                "spec.clients[1].dataset.revision: only applies with repoId"},
        BadCase{"duplicate episode", "episodes: [0, 2, 4]", "episodes: [0, 2, 2]", "spec.clients[1].dataset.episodes[2]: episode 2 is listed twice"},
        BadCase{"missing evaluation", "  evaluation:\n    dataset: {repoId: Hupy440/Two_Cubes_and_Two_Buckets_v2, revision: v2.1}\n", "",
                "spec.evaluation.dataset: is required"},
        BadCase{"eval mode", "revision: v2.1}", "revision: v2.1}\n    mode: fast", "spec.evaluation.mode: must be one of full, quick (got 'fast')"},
        BadCase{"batches in full mode", "revision: v2.1}", "revision: v2.1}\n    mode: full\n    batches: 3",
                "spec.evaluation.batches: only applies in quick mode"},
        BadCase{"evaluation set and inline dataset", "revision: v2.1}", "revision: v2.1}\n    sets: [{name: a, dataset: {path: /e}}]",
                "spec.evaluation.dataset: give it to each of spec.evaluation.sets instead"},
        BadCase{"evaluation sets named twice", "    dataset: {repoId: Hupy440/Two_Cubes_and_Two_Buckets_v2, revision: v2.1}",
                "    sets: [{name: a, dataset: {path: /e}}, {name: a, dataset: {path: /f}}]",
                "spec.evaluation.sets[1].name: 'a' names another evaluation set too"},
        BadCase{"evaluation set without a dataset", "    dataset: {repoId: Hupy440/Two_Cubes_and_Two_Buckets_v2, revision: v2.1}",
                "    sets: [{name: a, dataset: {path: /e}}, {name: sponsor, mode: full, batches: 2}]",
                "spec.evaluation.sets[1].dataset: is required"},
        BadCase{"evaluation set batches in full mode", "    dataset: {repoId: Hupy440/Two_Cubes_and_Two_Buckets_v2, revision: v2.1}",
                "    sets: [{name: a, dataset: {path: /e}}, {name: sponsor, dataset: {path: /f}, mode: full, batches: 2}]",
                "spec.evaluation.sets[1].batches: only applies in quick mode"},
        BadCase{"evaluation set name", "    dataset: {repoId: Hupy440/Two_Cubes_and_Two_Buckets_v2, revision: v2.1}",
                "    sets: [{name: Sponsor_A, dataset: {path: /e}}]", "spec.evaluation.sets[0].name: must be lower-case letters"},
        BadCase{"no evaluation sets", "    dataset: {repoId: Hupy440/Two_Cubes_and_Two_Buckets_v2, revision: v2.1}", "    sets: []",
                "spec.evaluation.sets: must be a list of 1 to 16 evaluation sets"},
        BadCase{"betas", "  rounds: 3", "  rounds: 3\n  training: {optimizer: {betas: [0.9]}}",
                "spec.training.optimizer.betas: must be two numbers in [0, 1)"},
        BadCase{"optimizer type", "  rounds: 3", "  rounds: 3\n  training: {optimizer: {type: sgd}}",
                "spec.training.optimizer.type: must be adamw"},
        BadCase{"precision", "  rounds: 3", "  rounds: 3\n  training: {precision: fp8}", "spec.training.precision: must be one of bf16, fp32"},
        BadCase{"cosine-only knob", "  rounds: 3", "  rounds: 3\n  training: {lrSchedule: {type: constant, minLrRatio: 0.5}}",
                "spec.training.lrSchedule.minLrRatio: only applies to the cosine schedule"},
        BadCase{"mu with fedavg", "  rounds: 3", "  rounds: 3\n  strategy: {type: fedavg, proximalMu: 0.1}",
                "spec.strategy.proximalMu: only applies to fedprox"},
        BadCase{"step-only knob", "  rounds: 3", "  rounds: 3\n  strategy: {muSchedule: {type: adaptive, factor: 0.5}}",
                "spec.strategy.muSchedule.factor: only applies to the step schedule"},
        BadCase{"fraction", "  rounds: 3", "  rounds: 3\n  strategy: {fractionFit: 1.5}", "spec.strategy.fractionFit: must be in (0, 1]"},
        BadCase{"min available", "  rounds: 3", "  rounds: 3\n  strategy: {minFitClients: 2, minAvailableClients: 1}",
                "spec.strategy.minAvailableClients: must be at least minFitClients"},
        BadCase{"more than listed", "  rounds: 3", "  rounds: 3\n  strategy: {minFitClients: 3, minAvailableClients: 3}",
                "spec.strategy.minAvailableClients: 3 exceeds the 2 clients listed"},
        BadCase{"unknown rule", "  rounds: 3", "  rounds: 3\n  strategy: {aggregation: {rule: geomedian}}",
                "spec.strategy.aggregation.rule: must be one of bulyan, krum, mean, median, multiKrum, trimmedMean (got 'geomedian')"},
        BadCase{"krum at n = 2f + 2", "  rounds: 3", "  rounds: 3\n  strategy: {aggregation: {rule: krum, byzantine: 0}}",
                "spec.strategy.minFitClients: 2 is too few for krum with byzantine 0: it needs at least 3 (2f + 3)"},
        BadCase{"bulyan below 4f + 3", "  rounds: 3", "  rounds: 3\n  strategy: {aggregation: {rule: bulyan, byzantine: 1}}",
                "spec.strategy.minFitClients: 2 is too few for bulyan with byzantine 1: it needs at least 7 (4f + 3)"},
        BadCase{"krum without f", "  rounds: 3", "  rounds: 3\n  strategy: {aggregation: {rule: multiKrum, select: 1}}",
                "spec.strategy.aggregation.byzantine: is required"},
        BadCase{"f with the median", "  rounds: 3", "  rounds: 3\n  strategy: {aggregation: {rule: median, byzantine: 1}}",
                "spec.strategy.aggregation.byzantine: only applies to krum, multiKrum and bulyan"},
        BadCase{"multi-krum selecting too many", "  rounds: 3", "  rounds: 3\n  strategy: {aggregation: {rule: multiKrum, byzantine: 0, select: 5}}",
                "spec.strategy.aggregation.select: must be in [1, minFitClients - byzantine] = [1, 2] (got 5)"},
        BadCase{"trimmed mean trimming nothing", "  rounds: 3", "  rounds: 3\n  strategy: {aggregation: {rule: trimmedMean, trimFraction: 0.2}}",
                "spec.strategy.aggregation.trimFraction: trims nothing with minFitClients 2 (floor(0.200000 * 2) = 0)"},
        BadCase{"trimming half", "  rounds: 3", "  rounds: 3\n  strategy: {aggregation: {rule: trimmedMean, trimFraction: 0.5}}",
                "spec.strategy.aggregation.trimFraction: must be in (0, 0.5)"},
        BadCase{"trim fraction without the trimmed mean", "  rounds: 3", "  rounds: 3\n  strategy: {aggregation: {trimFraction: 0.3}}",
                "spec.strategy.aggregation.trimFraction: only applies to trimmedMean"},
        BadCase{"two clip norms", "  rounds: 3", "  rounds: 3\n  strategy: {clipping: {norm: 1, quantile: 0.5}}",
                "spec.strategy.clipping: set exactly one of norm or quantile"},
        BadCase{"clip quantile", "  rounds: 3", "  rounds: 3\n  strategy: {clipping: {quantile: 1.5}}",
                "spec.strategy.clipping.quantile: must be in (0, 1]"},
        BadCase{"clip norm above the bound", "  rounds: 3", "  rounds: 3\n  strategy: {maxUpdateNorm: 10, clipping: {norm: 20}}",
                "spec.strategy.clipping.norm: is above spec.strategy.maxUpdateNorm"},
        BadCase{"a robust rule in asynchronous rounds", "  rounds: 3",
                "  rounds: 3\n  strategy: {asynchronous: {maxStaleness: 2}, aggregation: {rule: median}}",
                "spec.strategy.aggregation.rule: only mean applies to asynchronous rounds (got median)"},
        BadCase{"round attempts in asynchronous rounds", "  rounds: 3",
                "  rounds: 3\n  strategy: {asynchronous: {}, maxRoundAttempts: 2}",
                "spec.strategy.maxRoundAttempts: does not apply to asynchronous rounds"},
        BadCase{"a negative maximum staleness", "  rounds: 3", "  rounds: 3\n  strategy: {asynchronous: {maxStaleness: -1}}",
                "spec.strategy.asynchronous.maxStaleness: must not be negative"},
        BadCase{"an unknown staleness weight", "  rounds: 3", "  rounds: 3\n  strategy: {asynchronous: {stalenessWeight: linear}}",
                "spec.strategy.asynchronous.stalenessWeight"},
        BadCase{"asynchronous rounds checkpointed every other version", "  rounds: 3",
                "  rounds: 3\n  strategy: {asynchronous: {}}\n  checkpoints: {everyRounds: 2}",
                "spec.checkpoints.everyRounds: must be 1 with spec.strategy.asynchronous"},
        BadCase{"server optimizer without a type", "  rounds: 3", "  rounds: 3\n  strategy: {serverOptimizer: {lr: 0.1}}",
                "spec.strategy.serverOptimizer.type: is required"},
        BadCase{"momentum for adam", "  rounds: 3", "  rounds: 3\n  strategy: {serverOptimizer: {type: adam, momentum: 0.9}}",
                "spec.strategy.serverOptimizer.momentum: only applies to avgm"},
        BadCase{"betas for adagrad", "  rounds: 3", "  rounds: 3\n  strategy: {serverOptimizer: {type: adagrad, betas: [0.9, 0.99]}}",
                "spec.strategy.serverOptimizer.betas: only applies to adam and yogi"},
        BadCase{"tau zero", "  rounds: 3", "  rounds: 3\n  strategy: {serverOptimizer: {type: yogi, tau: 0}}",
                "spec.strategy.serverOptimizer.tau: must be a positive number"},
        BadCase{"server optimizer type", "  rounds: 3", "  rounds: 3\n  strategy: {serverOptimizer: {type: sgd}}",
                "spec.strategy.serverOptimizer.type: must be one of adagrad, adam, avgm, yogi (got 'sgd')"},
        BadCase{"policy type", "  rounds: 3", "  rounds: 3\n  policy: {type: diffusion}", "spec.policy.type: must be one of"},
        BadCase{"chunk size", "  rounds: 3", "  rounds: 3\n  transport: {chunkSize: 4Mb}",
                "spec.transport.chunkSize: must be a byte count or quantity such as 4Mi (got '4Mb')"},
        BadCase{"chunk vs message", "  rounds: 3", "  rounds: 3\n  transport: {chunkSize: 8Mi, maxMessageSize: 8Mi}",
                "spec.transport.maxMessageSize: must exceed chunkSize"},
        BadCase{"tls incomplete", "  rounds: 3", "  rounds: 3\n  transport: {tls: {certFile: tls.crt}}",
                "spec.transport.tls.caFile: is required"},
        BadCase{"tls key missing", "  rounds: 3", "  rounds: 3\n  transport: {tls: {caFile: ca.pem, certFile: tls.crt}}",
                "spec.transport.tls.keyFile: is required"},
        BadCase{"remote client with a dataset", "{repoId: shaunkirby/record-test}", "{repoId: shaunkirby/record-test}\n      remote: true",
                "spec.clients[0].dataset: does not apply to a remote client: its owner chooses it at zk0 join"},
        BadCase{"remote client without mutual tls", "dataset: {path: /data/b, episodes: [0, 2, 4]}", "remote: true",
                "spec.transport.tls.mutual: must be true when a client is remote"},
        BadCase{"join without a remote client", "  rounds: 3", "  rounds: 3\n  transport: {tls: {mutual: true}, join: {tokenTtlSeconds: 600}}",
                "spec.transport.join: applies only when a client is remote"},
        BadCase{"join token ttl", "dataset: {path: /data/b, episodes: [0, 2, 4]}",
                "remote: true\n  transport: {tls: {mutual: true}, join: {tokenTtlSeconds: 10}}",
                "spec.transport.join.tokenTtlSeconds: must be at least 60"},
        BadCase{"join key files together", "dataset: {path: /data/b, episodes: [0, 2, 4]}",
                "remote: true\n  transport: {tls: {caFile: ca, certFile: c, keyFile: k, mutual: true}, join: {caKeyFile: ca.key}}",
                "spec.transport.join.tokenKeyFile: is required with the other join file"},
        BadCase{"remote clients with tls files need join files", "dataset: {path: /data/b, episodes: [0, 2, 4]}",
                "remote: true\n  transport: {tls: {caFile: ca, certFile: c, keyFile: k, mutual: true}}",
                "spec.transport.join: caKeyFile and tokenKeyFile are required for remote clients with TLS files"},
        BadCase{"join ca secret with key files", "dataset: {path: /data/b, episodes: [0, 2, 4]}",
                "remote: true\n  transport: {tls: {caFile: ca, certFile: c, keyFile: k, mutual: true}, "
                "join: {caKeyFile: ca.key, tokenKeyFile: t.key, caSecret: zk0-ca}}",
                "spec.transport.join.caSecret: set either caSecret (a cluster) or the two key files"},
        BadCase{"node port outside the range", "dataset: {path: /data/b, episodes: [0, 2, 4]}",
                "remote: true\n  transport: {tls: {mutual: true}, expose: {nodePort: 8080}}",
                "spec.transport.expose.nodePort: must be in 30000-32767, the cluster's node port range (got 8080)"},
        BadCase{"expose address without a port", "dataset: {path: /data/b, episodes: [0, 2, 4]}",
                "remote: true\n  transport: {tls: {mutual: true}, expose: {address: robots.example.org}}",
                "spec.transport.expose.address: must be HOST:PORT, the address robot owners dial (got 'robots.example.org')"},
        BadCase{"expose type", "dataset: {path: /data/b, episodes: [0, 2, 4]}",
                "remote: true\n  transport: {tls: {mutual: true}, expose: {type: ClusterIP}}",
                "spec.transport.expose.type"},
        BadCase{"expose without a remote client", "  rounds: 3", "  rounds: 3\n  transport: {expose: {type: NodePort}}",
                "spec.transport.expose: applies only when a client is remote"},
        BadCase{"negative gpu", "{repoId: shaunkirby/record-test}", "{repoId: shaunkirby/record-test}\n      resources: {gpu: -1}",
                "spec.clients[0].resources.gpu: must not be negative"},
        BadCase{"memory quantity", "{repoId: shaunkirby/record-test}", "{repoId: shaunkirby/record-test}\n      resources: {memory: 32GB}",
                "spec.clients[0].resources.memory: must be a quantity such as 32Gi (got '32GB')"},
        BadCase{"node selector value", "{repoId: shaunkirby/record-test}",
                "{repoId: shaunkirby/record-test}\n      pod: {nodeSelector: {gpu: [a100]}}", "spec.clients[0].pod.nodeSelector.gpu: must be a string"},
        BadCase{"tolerations", "{repoId: shaunkirby/record-test}", "{repoId: shaunkirby/record-test}\n      pod: {tolerations: {key: x}}",
                "spec.clients[0].pod.tolerations: must be a list"},
        BadCase{"claim sub path", "{repoId: shaunkirby/record-test}", "{volumeClaim: {claimName: d, subPath: ../etc}}",
                "spec.clients[0].dataset.volumeClaim.subPath: must be a relative path inside the volume"},
        BadCase{"tls secret and files", "  rounds: 3", "  rounds: 3\n  transport: {tls: {secretName: s, caFile: ca.pem}}",
                "spec.transport.tls.caFile: set either secretName or the three files"},
        BadCase{"backoff limit", "  rounds: 3", "  rounds: 3\n  runPolicy: {backoffLimit: -1}", "spec.runPolicy.backoffLimit: must not be negative"},
        BadCase{"ttl", "  rounds: 3", "  rounds: 3\n  runPolicy: {ttlSecondsAfterFinished: -2}",
                "spec.runPolicy.ttlSecondsAfterFinished: must be -1 (keep) or more"},
        BadCase{"storage size", "  rounds: 3", "  rounds: 3\n  aggregator: {storage: {size: lots}}",
                "spec.aggregator.storage.size: must be a quantity such as 10Gi (got 'lots')"},
        BadCase{"aggregator gpu", "  rounds: 3", "  rounds: 3\n  aggregator: {resources: {gpu: 1}}", "spec.aggregator.resources.gpu: unknown field"},
        BadCase{"hub token secret", "  rounds: 3", "  rounds: 3\n  hubTokenSecret: {key: token}", "spec.hubTokenSecret.name: is required"},
        BadCase{"codec", "  rounds: 3", "  rounds: 3\n  transport: {compression: {codec: zstd}}", "spec.transport.compression.codec: must be one of"},
        BadCase{"block size of bf16", "  rounds: 3", "  rounds: 3\n  transport: {compression: {codec: bf16, blockSize: 256}}",
                "spec.transport.compression.blockSize: applies only with codec: int8"},
        BadCase{"int8 block size", "  rounds: 3", "  rounds: 3\n  transport: {compression: {codec: int8, blockSize: 8}}",
                "spec.transport.compression.blockSize: must be between 64 and 65536"},
        BadCase{"topk fraction", "  rounds: 3", "  rounds: 3\n  transport: {compression: {codec: topk, fraction: 0}}",
                "spec.transport.compression.fraction: must be in (0, 1]"},
        BadCase{"error feedback without codec", "  rounds: 3", "  rounds: 3\n  transport: {compression: {errorFeedback: true}}",
                "spec.transport.compression.errorFeedback: applies only with a codec"},
        BadCase{"codec with FedBuff", "  rounds: 3",
                "  rounds: 3\n  strategy: {asynchronous: {}}\n  transport: {compression: {codec: bf16}}",
                "spec.transport.compression.codec: does not apply with spec.strategy.asynchronous"},
        BadCase{"codec with worker clipping", "  rounds: 3",
                "  rounds: 3\n  strategy: {type: fedavg, minFitClients: 1, privacy: {clipNorm: 1, clipOn: worker, noiseMultiplier: 1, delta: 1.0e-5}}\n"
                "  transport: {compression: {codec: int8}}",
                "spec.transport.compression.codec: needs spec.strategy.privacy.clipOn: server"},
        BadCase{"kept updates under privacy", "  clients:",
                "  checkpoints: {keepUpdates: true}\n  strategy: {type: fedavg, minFitClients: 1, privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 1.0e-5}}\n  clients:",
                "spec.checkpoints.keepUpdates: cannot recompute a round under spec.strategy.privacy"},
        BadCase{"kept updates with FedBuff", "  clients:", "  checkpoints: {keepUpdates: true}\n  strategy: {asynchronous: {}}\n  clients:",
                "spec.checkpoints.keepUpdates: is for synchronous rounds"},
        BadCase{"contribution scores under privacy", "revision: v2.1}\n",
                "revision: v2.1}\n    contributionScores: {firstOrder: true}\n"
                "  strategy: {type: fedavg, minFitClients: 1, privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 1.0e-5}}\n",
                "spec.evaluation.contributionScores: scores of single clients' updates would undo spec.strategy.privacy's protection"},
        BadCase{"contribution scores with FedBuff", "revision: v2.1}\n",
                "revision: v2.1}\n    contributionScores: {leaveOneOut: true}\n  strategy: {asynchronous: {}}\n",
                "spec.evaluation.contributionScores: applies to synchronous rounds"},
        BadCase{"not yaml", "rounds: 3", "rounds: [3", "yaml:"}));

TEST(Spec, ReportsEveryProblemAtOnce) {
  std::string yaml = kMinimal;
  yaml.replace(yaml.find("rounds: 3"), 9, "rounds: 0\n  bogus: 1");
  try {
    parse_spec(yaml);
    FAIL() << "expected SpecError";
  } catch (const SpecError& e) {
    EXPECT_EQ(e.problems().size(), 2u) << e.what();
  }
}

TEST(Spec, MissingFileIsAnErrorNamingIt) {
  try {
    load_spec("/nonexistent/run.yaml");
    FAIL();
  } catch (const SpecError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/run.yaml"), std::string::npos);
  }
}

// A FederationMembership's problems, each with its field.
TEST(MembershipSpec, EveryProblemIsNamedByItsField) {
  const std::string head = "apiVersion: zk0.io/v1alpha1\nkind: FederationMembership\nmetadata: {name: alice}\nspec:\n";
  const MembershipSpec ok = parse_membership(head + "  endpoint: run.example.org:30551\n  tokenSecret: {name: t}\n  dataset: {volumeClaim: {claimName: d}}\n");
  EXPECT_EQ(ok.token_secret.key, "token");
  EXPECT_EQ(ok.storage_size, "1Gi");
  EXPECT_EQ(ok.dataset.volume_claim->claim_name, "d");
  const auto problems = [&](const std::string& spec) {
    try {
      parse_membership(head + spec);
    } catch (const SpecError& e) {
      return std::string(e.what());
    }
    return std::string("no problem");
  };
  EXPECT_NE(problems("  tokenSecret: {name: t}\n  dataset: {path: /d}\n").find("spec.endpoint: is required"), std::string::npos);
  EXPECT_NE(problems("  endpoint: run.example.org\n  tokenSecret: {name: t}\n  dataset: {path: /d}\n")
                .find("spec.endpoint: must be HOST:PORT, the run's join endpoint (got 'run.example.org')"),
            std::string::npos);
  EXPECT_NE(problems("  endpoint: h:1\n  dataset: {path: /d}\n").find("spec.tokenSecret: is required"), std::string::npos);
  EXPECT_NE(problems("  endpoint: h:1\n  tokenSecret: {key: k}\n  dataset: {path: /d}\n").find("spec.tokenSecret.name: is required"),
            std::string::npos);
  EXPECT_NE(problems("  endpoint: h:1\n  tokenSecret: {name: t}\n  dataset: {synthetic: {task: a}}\n")
                .find("spec.dataset: must be a volumeClaim or a path: a membership trains on the owner's own data"),
            std::string::npos);
  EXPECT_NE(problems("  endpoint: h:1\n  tokenSecret: {name: t}\n").find("spec.dataset: is required"), std::string::npos);
  EXPECT_NE(problems("  endpoint: h:1\n  tokenSecret: {name: t}\n  dataset: {path: /d}\n  resources: {gpu: -1}\n")
                .find("spec.resources.gpu: must not be negative"),
            std::string::npos);
  EXPECT_NE(problems("  endpoint: h:1\n  tokenSecret: {name: t}\n  dataset: {path: /d}\n  rounds: 3\n").find("spec.rounds: unknown field"),
            std::string::npos);
}
