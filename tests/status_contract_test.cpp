// The aggregator's GET /status is the operator's only view into a run: the document a real
// Coordinator writes must be the one the reconciler reads, so that renaming a field on either side
// fails here rather than leaving FederationRun statuses silently empty on clusters.
#include <gtest/gtest.h>

#include <thread>

#include "aggregator/coordinator.h"
#include "aggregator/termination_message.h"
#include "core/security/certificate.h"
#include "operator/kube/time_format.h"
#include "operator/reconciler.h"
#include "support/test_support.h"

using namespace zk0;

TEST(StatusContract, WhatTheAggregatorWritesIsWhatTheOperatorReads) {
  const std::string dir = test::make_temp_dir("status-contract");
  const FederationSpec spec = parse_spec(test::small_spec(dir + "/out", 2, 2, {{"minFitClients", "2"}, {"minAvailableClients", "2"}}));
  Coordinator coordinator(spec);
  std::map<std::string, Caller> callers;
  for (const char* name : {"c0", "c1"})
    callers[name] = Caller{coordinator.register_client(name, "flow-matching-mlp", coordinator.frozen_digest(), 240, std::nullopt), {}, {}};
  int rc = -1;
  std::thread run([&] { rc = coordinator.run(); });
  // Plays both workers for round 1 through the coordinator's own calls: each sends the global back.
  for (auto& [name, caller] : callers) {
    Instruction ins;
    ASSERT_TRUE(test::wait_until([&] { return (ins = coordinator.poll(caller, std::chrono::milliseconds(200))).kind == Instruction::Kind::Train; },
                                 std::chrono::seconds(20)));
    const auto global = coordinator.global_for(caller, ins.round, ins.parameters_digest, "");
    TrainReport report;
    report.samples = 640;
    report.steps = 20;
    report.loss = name == "c0" ? 0.25 : 0.5;
    // Each worker signs its claims with a key of its own (no TLS here), as the worker does.
    UpdateClaims claims{spec.name, name, ins.parameters_digest, ins.parameters_digest, ins.round, report.samples, report.steps,
                        report.loss, report.policy_loss};
    const SigningKey key = SigningKey::load_or_create_ed25519("");
    const UploadPermit permit = coordinator.begin_upload(
        caller, ins.round, ins.parameters_digest, {claims.canonical(), key.sign(claims_message(claims.canonical())), key.public_key_pem()});
    coordinator.submit(permit, global->parameters, report, ins.parameters_digest, 1, 0.1);
  }
  ASSERT_TRUE(test::wait_until([&] { return nlohmann::json::parse(coordinator.status_json()).value("round", 0) == 2; },
                               std::chrono::seconds(20)));
  for (auto& [name, caller] : callers) coordinator.heartbeat(caller, "training", 2);

  // The operator's side: the run's status before and after reading that document (with the
  // epsilon a run under strategy.privacy reports; tests/federation_test.cpp Privacy.* checks the
  // aggregator writes it).
  nlohmann::json status = {{"currentRound", 1}, {"clients", nlohmann::json::array({{{"name", "c0"}}, {{"name", "c1"}}})}};
  nlohmann::json document = nlohmann::json::parse(coordinator.status_json());
  document["privacy_epsilon"] = 1.25;
  document["privacy_delta"] = 1e-5;
  // And with the contribution scores a run under evaluation.contributionScores reports
  // (tests/attack_test.cpp ContributionScores.* checks the aggregator writes them).
  document["clients"]["c0"]["contribution_score"] = {{"first_order", 0.125}, {"leave_one_out", -0.5}};
  document["clients"]["c0"]["contribution_score_by_set"] = {{"heldout", {{"first_order", 0.125}, {"leave_one_out", -0.5}}}};
  const auto completed = op::merge_aggregator_status(status, document, spec);
  ASSERT_TRUE(completed.has_value()) << coordinator.status_json();
  EXPECT_NE(completed->find("round 1 of 2 completed; server eval loss"), std::string::npos) << *completed;
  EXPECT_NE(completed->find("privacy epsilon 1.25"), std::string::npos) << *completed;
  EXPECT_EQ(status["privacyEpsilon"], 1.25);
  EXPECT_EQ(status["currentRound"], 2);
  EXPECT_EQ(status["readyClients"], 2);
  ASSERT_TRUE(status.contains("serverEvalLoss")) << coordinator.status_json();
  EXPECT_GT(status["serverEvalLoss"].get<double>(), 0);
  EXPECT_DOUBLE_EQ(status["clients"][0]["lastLoss"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(status["clients"][1]["lastLoss"].get<double>(), 0.5);
  EXPECT_EQ(status["clients"][0]["contributionScore"], (nlohmann::json{{"firstOrder", 0.125}, {"leaveOneOut", -0.5}}));
  EXPECT_FALSE(status["clients"][1].contains("contributionScore"));
  EXPECT_EQ(status["clients"][0]["contributionScoreBySet"],
            nlohmann::json::parse(R"([{"set": "heldout", "firstOrder": 0.125, "leaveOneOut": -0.5}])"));
  // Each evaluation set's loss by name (one here: the inline dataset, "heldout").
  ASSERT_EQ(status["evaluationSets"].size(), 1u) << coordinator.status_json();
  EXPECT_EQ(status["evaluationSets"][0]["name"], "heldout");
  EXPECT_EQ(status["evaluationSets"][0]["loss"], status["serverEvalLoss"]);
  for (const auto& client : status["clients"]) EXPECT_EQ(client["aggregatorState"], "training") << status.dump();

  // Values of any other shape are left out.
  nlohmann::json hostile = nlohmann::json::parse(coordinator.status_json());
  hostile["round"] = 1 << 30;
  hostile["last_server_eval_loss"] = "NaN";
  hostile["clients"]["c0"]["state"] = std::string(1 << 20, 'x');
  hostile["clients"]["c1"]["last_loss"] = nlohmann::json::object();
  hostile["privacy_epsilon"] = -3;
  nlohmann::json kept = status;
  op::merge_aggregator_status(kept, hostile, spec);
  EXPECT_EQ(kept["privacyEpsilon"], 1.25);
  hostile["privacy_epsilon"] = "large";
  op::merge_aggregator_status(kept, hostile, spec);
  EXPECT_EQ(kept["privacyEpsilon"], 1.25);
  EXPECT_EQ(kept["currentRound"], 2);
  EXPECT_EQ(kept["serverEvalLoss"], status["serverEvalLoss"]);
  EXPECT_EQ(kept["clients"][0]["aggregatorState"], "training");
  EXPECT_EQ(kept["clients"][1]["lastLoss"], 0.5);

  // The same document as the termination message the aggregator leaves in its pod's status: what
  // the operator reads once the process is gone, within the kubelet's 4096 bytes.
  const std::string summary = termination_summary(document.dump());
  EXPECT_LE(summary.size(), 4096u);
  nlohmann::json from_summary = {{"currentRound", 1}, {"clients", nlohmann::json::array({{{"name", "c0"}}, {{"name", "c1"}}})}};
  op::merge_aggregator_status(from_summary, nlohmann::json::parse(summary), spec);
  EXPECT_EQ(from_summary["currentRound"], status["currentRound"]);
  EXPECT_EQ(from_summary["serverEvalLoss"], status["serverEvalLoss"]);
  EXPECT_EQ(from_summary["privacyEpsilon"], 1.25);
  EXPECT_EQ(from_summary["evaluationSets"], status["evaluationSets"]);
  EXPECT_EQ(from_summary["clients"], status["clients"]) << summary;
  // Hundreds of clients do not fit: the run's round and loss still do.
  nlohmann::json crowded = nlohmann::json::parse(coordinator.status_json());
  for (int i = 0; i < 500; ++i) crowded["clients"]["client-" + std::to_string(i)] = {{"state", "training"}, {"last_loss", 0.5}};
  crowded["message"] = std::string(10000, 'm');
  const std::string short_summary = termination_summary(crowded.dump());
  EXPECT_LE(short_summary.size(), 4096u);
  EXPECT_EQ(nlohmann::json::parse(short_summary)["round"], 2);

  coordinator.request_stop();
  run.join();
  EXPECT_NE(rc, 0);  // stopped before its last round
}

// A remote client as the run's status shows it: Joining while the aggregator lists it as not
// joined, then Joined, with the time the aggregator last heard from it.
TEST(StatusContract, ARemoteClientIsJoiningUntilTheAggregatorKnowsIt) {
  const std::string dir = test::make_temp_dir("status-contract-remote");
  std::string yaml = test::small_spec(dir + "/out", 1, 2,
                                      {{"tls", "    tls: {mutual: true}"}, {"minFitClients", "2"}, {"minAvailableClients", "2"}});
  yaml.replace(yaml.find("  evaluation:"), 0, "    - name: owner-b\n      remote: true\n");
  const FederationSpec spec = parse_spec(yaml);
  Coordinator coordinator(spec);
  // Under mutual TLS a client registers with a certificate naming it.
  const auto certificate = [](const std::string& client) {
    return CertificateInfo{std::string(64, client == "c0" ? 'a' : 'b'), "CN=" + client, {client_identity_uri("test-run", client)}, {}};
  };
  coordinator.register_client("c0", "flow-matching-mlp", coordinator.frozen_digest(), 240, certificate("c0"));
  nlohmann::json status = {{"clients", nlohmann::json::array({{{"name", "c0"}}, {{"name", "owner-b"}, {"remote", true}, {"state", "Joining"}}})}};
  op::merge_aggregator_status(status, nlohmann::json::parse(coordinator.status_json()), spec);
  EXPECT_FALSE(status["clients"][1].value("joined", false)) << coordinator.status_json();
  EXPECT_EQ(status["clients"][1]["state"], "Joining");
  EXPECT_FALSE(status["clients"][1].contains("lastSeen"));
  EXPECT_FALSE(status["clients"][0].contains("joined")) << "a client with a pod is not remote";

  const auto before = std::chrono::system_clock::now();
  coordinator.register_client("owner-b", "flow-matching-mlp", coordinator.frozen_digest(), 240, certificate("owner-b"));
  op::merge_aggregator_status(status, nlohmann::json::parse(coordinator.status_json()), spec);
  EXPECT_TRUE(status["clients"][1].value("joined", false)) << coordinator.status_json();
  EXPECT_EQ(status["clients"][1]["state"], "Joined");
  EXPECT_EQ(status["clients"][1]["aggregatorState"], "idle");
  const auto seen = kube::parse_rfc3339(status["clients"][1].value("lastSeen", ""));
  EXPECT_LE(std::chrono::abs(seen - before), std::chrono::seconds(2)) << status.dump();
}
