// Attacks on zk0 as a participant, a run author or a pod would mount them, each with the defence
// it must meet: against a real zk0-aggregator process (the attacker is a small gRPC client built
// from proto/zk0/v1/federation.proto, honest clients are real zk0-worker processes), against the
// operator's pod renderer, and against checkpoints on disk.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/metrics/http_get.h"
#include "core/tensor/hash.h"
#include "core/tensor/manifest.h"
#include "core/tensor/safetensors.h"
#include "core/transport/channel.h"
#include "core/transport/parameter_stream.h"
#include "core/util/exit_codes.h"
#include "core/util/fs.h"
#include "operator/children.h"
#include "support/signed_header.h"
#include "support/test_support.h"
#include "zk0/v1/federation.grpc.pb.h"

using namespace zk0;
using namespace zk0::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// A run on loopback: its aggregator process and honest workers.
struct LiveRun {
  std::string dir, spec, out, metrics_port_file;
  int port = 0;  // the aggregator's, known once it listens
  std::unique_ptr<Process> aggregator;
  std::map<std::string, std::unique_ptr<Process>> workers;

  LiveRun(const std::string& tag, int clients, int rounds, const std::map<std::string, std::string>& overrides = {}) {
    dir = make_temp_dir(tag);
    out = dir + "/out";
    spec = write_spec(dir, small_spec(out, clients, rounds, overrides));
    metrics_port_file = dir + "/aggregator.metrics-port";
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  void start_aggregator() {
    // Port 0 and a port file: a port picked free beforehand can be taken in between (the metrics
    // listener's port 0 once drew it, and the aggregator could not listen).
    const std::string port_file = dir + "/aggregator.port";
    aggregator = std::make_unique<Process>(std::vector<std::string>{bin("zk0-aggregator"), "--spec", spec, "--listen", "127.0.0.1:0",
                                                                    "--port-file", port_file, "--metrics-listen", "127.0.0.1:0",
                                                                    "--metrics-port-file", metrics_port_file},
                                           dir + "/aggregator.log");
    ASSERT_TRUE(wait_until([&] { return aggregator->log().find("event=listening") != std::string::npos || !aggregator->running(); }, 30s));
    ASSERT_TRUE(aggregator->running()) << aggregator->log();
    ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(port_file); }, 10s)) << aggregator->log();
    port = std::stoi(read_file(port_file));
  }
  void start_worker(const std::string& name) {
    workers[name] = std::make_unique<Process>(
        std::vector<std::string>{bin("zk0-worker"), "--spec", spec, "--client", name, "--aggregator", address(), "--metrics-listen",
                                 "127.0.0.1:0"},
        dir + "/" + name + ".log");
  }
  int metrics_port() const { return std::stoi(read_file(metrics_port_file)); }
  std::string frozen_digest() const {
    const std::string log = aggregator->log(), key = "frozen_digest=";
    const size_t at = log.find(key);
    return at == std::string::npos ? "" : log.substr(at + key.size(), 64);
  }
  nlohmann::json status() const { return read_json(out + "/status.json"); }
  nlohmann::json metrics() const { return read_json(out + "/federated_metrics.json"); }
  std::string logs() const {
    std::string all = aggregator ? aggregator->log() : "";
    for (const auto& [n, w] : workers) all += "\n--- " + n + " ---\n" + w->log();
    return all;
  }
};

// A participant that follows the protocol only as far as it likes.
class Attacker {
 public:
  explicit Attacker(const std::string& address) {
    TransportSpec transport;
    transport.max_message_bytes = 16 << 20;
    channel_ = make_channel(address, transport);
    stub_ = v1::Federation::NewStub(channel_);
  }
  v1::Federation::Stub& stub() { return *stub_; }

  grpc::Status register_as(const std::string& name, const std::string& frozen_digest, uint64_t samples = 240) {
    v1::RegisterRequest req;
    req.set_protocol_version(1);
    req.set_client_name(name);
    req.set_policy_type("flow-matching-mlp");
    req.set_frozen_digest(frozen_digest);
    req.set_dataset_samples(samples);
    v1::RegisterReply reply;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    ctx.set_wait_for_ready(true);
    const grpc::Status s = stub_->Register(&ctx, req, &reply);
    if (s.ok()) session_ = reply.session_id(), name_ = name;
    return s;
  }
  const std::string& session() const { return session_; }
  const std::string& name() const { return name_; }

  grpc::Status heartbeat(const std::string& state, int round = 0) {
    v1::HeartbeatRequest req;
    req.set_session_id(session_);
    req.set_state(state);
    req.set_round(static_cast<uint32_t>(round));
    v1::HeartbeatReply reply;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    return stub_->Heartbeat(&ctx, req, &reply);
  }

  v1::Instruction poll_until_train(std::chrono::seconds timeout = 60s) {
    v1::Instruction ins;
    wait_until(
        [&] {
          grpc::ClientContext ctx;
          v1::PollRequest req;
          req.set_session_id(session_);
          req.set_wait_ms(500);
          ins.Clear();
          stub_->PollInstruction(&ctx, req, &ins);
          return ins.kind() == v1::Instruction::TRAIN;
        },
        timeout);
    return ins;
  }

  ParameterSet download(const v1::Instruction& ins) {
    grpc::ClientContext ctx;
    v1::DownloadRequest req;
    req.set_session_id(session_);
    req.set_round(ins.round());
    req.set_parameters_digest(ins.parameters_digest());
    auto reader = stub_->DownloadParameters(&ctx, req);
    ParameterReceiver receiver(std::nullopt);
    receive_parameter_messages<v1::ParameterMessage>(*reader, receiver);
    EXPECT_TRUE(reader->Finish().ok());
    return receiver.finish();
  }

  grpc::Status upload(const v1::Instruction& ins, const ParameterSet& update, uint64_t claimed_samples) {
    grpc::ClientContext ctx;
    v1::UploadReply reply;
    auto writer = stub_->UploadUpdate(&ctx, &reply);
    v1::UploadMessage msg;
    auto* header = msg.mutable_header();
    header->set_session_id(session_);
    header->set_round(ins.round());
    header->set_base_digest(ins.parameters_digest());
    header->mutable_metrics()->set_samples(claimed_samples);
    header->mutable_metrics()->set_steps(20);
    header->mutable_metrics()->set_loss(0.1);
    sign_upload_header(*header, "test-run", name_, build_manifest(update).digest_hex());
    if (writer->Write(msg))
      send_parameter_messages<v1::UploadMessage>(build_manifest(update), update, 4 << 20,
                                                 [&](const v1::UploadMessage& m) { return writer->Write(m); });
    writer->WritesDone();
    return writer->Finish();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Federation::Stub> stub_;
  std::string session_, name_;
};

// An UploadUpdate stream that has sent `header` (or nothing) and then goes quiet.
struct IdleUpload {
  grpc::ClientContext ctx;
  v1::UploadReply reply;
  std::unique_ptr<grpc::ClientWriter<v1::UploadMessage>> writer;
  IdleUpload(v1::Federation::Stub& stub, const v1::UploadHeader* header) {
    writer = stub.UploadUpdate(&ctx, &reply);
    if (header) {
      v1::UploadMessage msg;
      *msg.mutable_header() = *header;
      writer->Write(msg);
    }
  }
  ~IdleUpload() { ctx.TryCancel(); }
};

bool aggregator_logged(const LiveRun& r, const std::string& text) { return r.aggregator->log().find(text) != std::string::npos; }

}  // namespace

// Idle UploadUpdate streams (no session, or a header naming none) used to take every upload slot
// before anything was authorised: honest workers straggled, and the handlers parked in the slot
// wait kept the process alive after its run. Now no slot is taken before the header is
// authorised, the silent ones are cancelled, and the aggregator exits on time.
TEST(Abuse, IdleUploadStreamsStopNoUploadAndTheAggregatorStillExits) {
  // The run lasts well beyond the stall allowance (5 s at this round timeout): about 14 s here,
  // where 1500 steps a round once ended the run in 4.6 s, before any stream was due to stall.
  LiveRun r("idle-streams", 2, 3, {{"localSteps", "5000"}, {"roundTimeoutSeconds", "50"}});
  r.start_aggregator();
  Attacker attacker(r.address());
  std::vector<std::unique_ptr<IdleUpload>> idle;
  v1::UploadHeader forged;
  forged.set_session_id("0123456789abcdef0123456789abcdef");
  forged.set_round(1);
  for (int i = 0; i < 8; ++i) idle.push_back(std::make_unique<IdleUpload>(attacker.stub(), nullptr));
  for (int i = 0; i < 4; ++i) idle.push_back(std::make_unique<IdleUpload>(attacker.stub(), &forged));
  r.start_worker("c0");
  r.start_worker("c1");
  ASSERT_EQ(r.aggregator->wait(120s), 0) << r.logs();
  const auto rounds = r.metrics()["rounds"];
  ASSERT_EQ(rounds.size(), 4u);
  for (int round = 1; round <= 3; ++round) {
    EXPECT_EQ(rounds[round]["attempts"], 1) << "honest uploads were held up";
    EXPECT_EQ(rounds[round]["clients_accepted"], 2);
  }
  // The streams without a header were cancelled, and the forged headers refused.
  EXPECT_GE(count_of(r.aggregator->log(), "event=stream_stalled"), 8u) << r.aggregator->log();
  for (const auto& w : r.workers) EXPECT_EQ(w.second->wait(30s), 0) << w.second->log();

  // SIGTERM while idle streams are held: the process still stops within seconds.
  LiveRun long_run("idle-sigterm", 2, 50, {{"localSteps", "200"}});
  long_run.start_aggregator();
  Attacker second(long_run.address());
  std::vector<std::unique_ptr<IdleUpload>> held;
  for (int i = 0; i < 8; ++i) held.push_back(std::make_unique<IdleUpload>(second.stub(), nullptr));
  long_run.start_worker("c0");
  long_run.start_worker("c1");
  ASSERT_TRUE(wait_until([&] { return file_exists(long_run.out + "/rounds/round_0001.json"); }, 60s)) << long_run.logs();
  const auto t0 = Clock::now();
  long_run.aggregator->signal(SIGTERM);
  EXPECT_NE(long_run.aggregator->wait(20s), -1) << "the aggregator outlived SIGTERM";
  EXPECT_LT(Clock::now() - t0, 15s);
}

// Uploads that were authorised (a real client's session and header) and then stall hold a slot
// only until the stall allowance (a tenth of the round, at least 5 s): honest clients waiting
// behind them get the slots and the round completes.
TEST(Abuse, StalledAuthorisedUploadsAreCancelledAndHonestClientsFinish) {
  LiveRun r("stalled", 6, 1, {{"localSteps", "40"}, {"minFitClients", "2"}, {"minAvailableClients", "6"}, {"roundTimeoutSeconds", "60"}});
  r.start_aggregator();
  std::vector<std::unique_ptr<Attacker>> attackers;
  std::vector<std::unique_ptr<IdleUpload>> stalled;
  std::atomic<bool> beating{true};
  std::vector<std::thread> beats;
  for (const char* name : {"c2", "c3", "c4", "c5"}) {
    attackers.push_back(std::make_unique<Attacker>(r.address()));
    ASSERT_TRUE(attackers.back()->register_as(name, r.frozen_digest()).ok()) << r.aggregator->log();
    Attacker* a = attackers.back().get();
    beats.emplace_back([a, &beating] {
      while (beating) {
        a->heartbeat("training", 0);
        std::this_thread::sleep_for(500ms);  // a client's own heartbeat period, not a test wait
      }
    });
  }
  r.start_worker("c0");
  r.start_worker("c1");
  for (auto& a : attackers) {
    const v1::Instruction ins = a->poll_until_train();
    ASSERT_EQ(ins.kind(), v1::Instruction::TRAIN) << r.logs();
    v1::UploadHeader header;
    header.set_session_id(a->session());
    header.set_round(ins.round());
    header.set_base_digest(ins.parameters_digest());
    sign_upload_header(header, "test-run", a->name(), ins.parameters_digest());
    stalled.push_back(std::make_unique<IdleUpload>(a->stub(), &header));
  }
  // The stalled streams are cancelled; then the attackers fall silent and drop out.
  ASSERT_TRUE(wait_until([&] { return count_of(r.aggregator->log(), "event=stream_stalled") >= 4; }, 40s)) << r.aggregator->log();
  beating = false;
  for (auto& t : beats) t.join();
  ASSERT_EQ(r.aggregator->wait(90s), 0) << r.logs();
  std::map<std::string, std::string> outcome;
  const auto metrics = r.metrics();
  for (const auto& c : metrics["rounds"][1]["clients"]) outcome[c["client"].get<std::string>()] = c["status"].get<std::string>();
  EXPECT_EQ(outcome["c0"], "accepted");
  EXPECT_EQ(outcome["c1"], "accepted");
  for (const char* name : {"c2", "c3", "c4", "c5"}) EXPECT_NE(outcome[name], "accepted") << name;
  EXPECT_LT(metrics["rounds"][1]["duration_seconds"].get<double>(), 55.0) << "the round waited for its deadline";
}

// One client used to set the averaging weight by the sample count it reported, and could send
// huge finite values: 1e18 samples times 1e30 overflowed to NaN, which was checkpointed. Now the
// server decides the weight, bounds the update's distance and refuses what is not finite.
TEST(Abuse, HugeFiniteUpdatesAndInflatedSampleCountsMoveNothing) {
  LiveRun r("poison", 2, 2, {{"localSteps", "30"}, {"minFitClients", "1"}, {"minAvailableClients", "2"}, {"maxRoundAttempts", "maxRoundAttempts: 3"}});
  r.start_aggregator();
  Attacker attacker(r.address());
  EXPECT_EQ(attacker.register_as("c1", r.frozen_digest(), uint64_t{1} << 60).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(attacker.register_as("c1", r.frozen_digest()).ok());
  std::atomic<bool> beating{true};
  std::thread beat([&] {
    while (beating) {
      attacker.heartbeat("idle");
      std::this_thread::sleep_for(500ms);  // the attacker's own heartbeat period
    }
  });
  r.start_worker("c0");
  v1::Instruction ins = attacker.poll_until_train();
  ParameterSet global = attacker.download(ins);
  ParameterSet huge = global;
  for (auto& t : huge.tensors)
    for (int64_t k = 0; k < t.numel(); ++k) t.as<float>()[k] = 1e30f;
  const grpc::Status refused = attacker.upload(ins, huge, uint64_t{1} << 60);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("maxUpdateNorm"), std::string::npos) << refused.error_message();
  // Round 2: a harmless update claiming a trillion-fold sample count weighs what it was asked for.
  ins = attacker.poll_until_train();
  ASSERT_EQ(ins.round(), 2u) << r.logs();
  global = attacker.download(ins);
  EXPECT_TRUE(attacker.upload(ins, global, uint64_t{1} << 60).ok());
  ASSERT_EQ(r.aggregator->wait(120s), 0) << r.logs();
  beating = false;
  beat.join();
  const auto rounds = r.metrics()["rounds"];
  for (const auto& round : rounds) ASSERT_TRUE(std::isfinite(round["server_eval_loss"].get<double>())) << round.dump();
  for (const auto& c : rounds[1]["clients"]) {
    if (c["client"] == "c1") {
      EXPECT_EQ(c["reason"], "update_norm") << c.dump();
    }
  }
  for (const auto& c : rounds[2]["clients"]) {
    EXPECT_EQ(c["status"], "accepted") << c.dump();
    EXPECT_DOUBLE_EQ(c["weight"].get<double>(), 0.5) << c.dump();  // equal datasets, equal asks
  }
  EXPECT_EQ(r.status()["rejected_updates"]["update_norm"], 1);
}

// Heartbeat states and failure reasons of any length used to be kept, copied into every status
// write under the coordinator's lock, and into the FederationRun. Now only the documented states
// are accepted, reasons are capped, and a flood costs honest clients nothing.
TEST(Abuse, OversizedStatesAndReasonsAreRefusedOrCapped) {
  LiveRun r("strings", 2, 1, {{"localSteps", "100000"}, {"roundTimeoutSeconds", "120"}});
  r.start_aggregator();
  Attacker attacker(r.address()), honest(r.address());
  ASSERT_TRUE(attacker.register_as("c1", r.frozen_digest()).ok());
  ASSERT_TRUE(honest.register_as("c0", r.frozen_digest()).ok());
  const std::string huge(7 << 20, 'x');
  const auto t0 = Clock::now();
  EXPECT_EQ(attacker.heartbeat(huge).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(attacker.heartbeat("pwned").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(Clock::now() - t0, 2s);
  // A flood of such heartbeats beside an honest client's.
  std::atomic<bool> flooding{true};
  std::thread flood([&] {
    while (flooding) attacker.heartbeat(huge);
  });
  double slowest = 0;
  for (int i = 0; i < 20; ++i) {
    const auto start = Clock::now();
    EXPECT_TRUE(honest.heartbeat("idle").ok());
    slowest = std::max(slowest, std::chrono::duration<double>(Clock::now() - start).count());
  }
  flooding = false;
  flood.join();
  EXPECT_LT(slowest, 0.5) << "an honest heartbeat waited behind the flood";
  // A failure reason is capped, and control characters cannot forge log lines.
  v1::FailureReport report;
  report.set_session_id(attacker.session());
  report.set_reason("disk full\nts=2026-01-01T00:00:00.000Z level=error component=aggregator event=run_failed reason=forged\r" +
                    std::string(100000, 'y'));
  report.set_fatal(true);
  v1::FailureAck ack;
  grpc::ClientContext ctx;
  EXPECT_TRUE(attacker.stub().ReportFailure(&ctx, report, &ack).ok());
  ASSERT_TRUE(wait_until([&] {
    try {
      return r.status()["clients"]["c1"]["state"] == "failed";
    } catch (...) {
      return false;
    }
  }, 10s));
  EXPECT_LE(r.status()["clients"]["c1"]["failure"].get<std::string>().size(), 1100u);
  EXPECT_LT(fs::file_size(r.out + "/status.json"), 16u << 10);
  EXPECT_EQ(r.aggregator->log().find("\nts=2026-01-01T00:00:00.000Z"), std::string::npos) << "a forged log line";
  for (const auto& line : {std::string("event=client_failed client=c1")})
    EXPECT_NE(r.aggregator->log().find(line), std::string::npos);
  r.aggregator->signal(SIGTERM);
  EXPECT_NE(r.aggregator->wait(20s), -1);
}

// The metrics endpoint was one thread with no timeouts: four idle connections starved it and a
// peer that never read blocked it in send, so the process could not stop. Now it serves through
// both and SIGTERM still ends the process.
TEST(Abuse, MetricsEndpointServesThroughIdleAndNonReadingPeers) {
  LiveRun r("metrics-dos", 2, 50, {{"localSteps", "200"}});
  r.start_aggregator();
  const int port = r.metrics_port();
  std::vector<int> sockets;
  const auto connect_to = [&](int rcvbuf) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    sockets.push_back(fd);
    return fd;
  };
  for (int i = 0; i < 100; ++i) connect_to(0);  // idle: never send a request
  for (int i = 0; i < 8; ++i) {                 // ask, then never read the answer
    const int fd = connect_to(1024);
    const std::string get = "GET /metrics HTTP/1.0\r\n\r\n";
    EXPECT_GT(write(fd, get.data(), get.size()), 0);
  }
  for (const char* path : {"/metrics", "/healthz", "/status"}) {
    const auto start = Clock::now();
    const HttpResponse resp = zk0::http_get("127.0.0.1", port, path, 4 << 20, 3s);
    EXPECT_EQ(resp.status, 200) << path;
    EXPECT_LT(Clock::now() - start, 2s) << path;
  }
  EXPECT_NE(zk0::http_get("127.0.0.1", port, "/metrics", 4 << 20, 3s).body.find("zk0_build_info"), std::string::npos);
  const auto t0 = Clock::now();
  r.aggregator->signal(SIGTERM);
  EXPECT_NE(r.aggregator->wait(20s), -1) << "the aggregator outlived SIGTERM";
  EXPECT_LT(Clock::now() - t0, 15s);
  for (int fd : sockets) close(fd);
}

// A FederationRun's author used to be able to make the operator create any pod: host namespaces,
// a privileged root container, the node's / as a hostPath, any service account. What the parser
// refuses is named; what gets past it (or past a CRD without validation) is undone by the
// renderer.
TEST(Abuse, CraftedSpecsCannotLoosenThePodsTheOperatorCreates) {
  const std::string base = small_spec("/tmp/unused", 2, 1);
  const auto refused = [&](const std::string& pod_block) {
    try {
      std::string yaml = base;
      const std::string at = "      dataset: {synthetic: {task: \"task 0\"";
      yaml.insert(yaml.find(at), "      pod: " + pod_block + "\n");
      parse_spec(yaml);
      return std::string("accepted");
    } catch (const SpecError& e) {
      return std::string(e.what());
    }
  };
  EXPECT_NE(refused("{overrides: {spec: {hostPID: true}}}").find("spec.clients[0].pod.overrides.spec.hostPID: may not be overridden"),
            std::string::npos);
  for (const char* field : {"hostNetwork", "containers", "volumes", "serviceAccountName", "securityContext", "nodeName"})
    EXPECT_NE(refused("{overrides: {spec: {" + std::string(field) + ": x}}}").find("overrides.spec." + std::string(field)),
              std::string::npos)
        << field;
  EXPECT_NE(refused("{overrides: {metadata: {labels: {zk0.io/run: other-run}}}}").find("is set by the operator"), std::string::npos);
  EXPECT_NE(refused("{overrides: {status: {}}}").find("overrides may set only metadata and spec"), std::string::npos);
  EXPECT_EQ(refused("{overrides: {spec: {priorityClassName: high}, metadata: {labels: {team: robots}}}}"), "accepted");

  // Past the parser: every forbidden field at once, straight into the renderer.
  FederationSpec spec = parse_spec(base);
  spec.clients[0].pod.overrides = nlohmann::json::parse(R"({
    "metadata": {"labels": {"zk0.io/run": "another-run", "app.kubernetes.io/component": "aggregator"}},
    "spec": {"hostPID": true, "hostNetwork": true, "hostIPC": true, "serviceAccountName": "cluster-admin",
             "automountServiceAccountToken": true, "nodeName": "control-plane",
             "securityContext": {"runAsUser": 0, "runAsNonRoot": false}}})");
  const nlohmann::json run = {{"metadata", {{"name", "test-run"}, {"namespace", "ns"}, {"uid", "u"}}}};
  op::OperatorSettings settings;
  const nlohmann::json pod = op::worker_pod(run, spec, spec.clients[0], settings, 1);
  const auto& s = pod["spec"];
  for (const char* key : {"hostPID", "hostNetwork", "hostIPC", "serviceAccountName", "nodeName"}) EXPECT_FALSE(s.contains(key)) << key;
  EXPECT_FALSE(s["automountServiceAccountToken"].get<bool>());
  EXPECT_TRUE(s["securityContext"]["runAsNonRoot"].get<bool>());
  EXPECT_EQ(s["securityContext"]["runAsUser"], 65532);
  EXPECT_FALSE(s["containers"][0]["securityContext"]["allowPrivilegeEscalation"].get<bool>());
  EXPECT_EQ(pod["metadata"]["labels"]["zk0.io/run"], "test-run");
  EXPECT_EQ(pod["metadata"]["labels"]["app.kubernetes.io/component"], "worker");

  // A dataset path is a hostPath only under a prefix the operator allows; none by default.
  spec.clients[0].dataset = DatasetSpec{};
  spec.clients[0].dataset.path = "/";
  EXPECT_NE(op::cluster_problems(spec, settings)[0].find("spec.clients[0].dataset.path: / would be a hostPath"), std::string::npos);
  settings.host_path_prefixes = {"/srv/lerobot"};
  for (const char* outside : {"/", "/srv/lerobot/../../etc", "/srv/lerobotx/a", "srv/lerobot/a", "/srv/lerobot/a/.."}) {
    spec.clients[0].dataset.path = outside;
    EXPECT_EQ(op::cluster_problems(spec, settings).size(), 1u) << outside;
  }
  spec.clients[0].dataset.path = "/srv/lerobot/owner-a";
  EXPECT_TRUE(op::cluster_problems(spec, settings).empty());
}

// A pod that can write the checkpoint volume used to be able to plant a model, and `latest` was
// joined into a path unchecked. Now the aggregator resumes only from a checkpoint it signed,
// whose files are exactly those SHA256SUMS lists, in a round_NNNN folder.
TEST(Abuse, TamperedCheckpointsAreRefusedOnResume) {
  LiveRun r("tamper", 2, 2, {{"localSteps", "20"}, {"keepLast", "0"}});
  const std::string key = r.dir + "/checkpoint.key";
  std::ofstream(key) << std::string(64, 'k');
  std::string yaml = read_file(r.spec);
  yaml.replace(yaml.find("keepLast: 0}"), 12, "keepLast: 0, signingKeyFile: " + key + "}");
  std::ofstream(r.spec) << yaml;
  r.start_aggregator();
  r.start_worker("c0");
  r.start_worker("c1");
  ASSERT_EQ(r.aggregator->wait(120s), 0) << r.logs();
  const std::string ckpt = r.out + "/checkpoints/round_0002";
  ASSERT_TRUE(file_exists(ckpt + "/SHA256SUMS.sig"));
  const std::string pristine = r.dir + "/pristine";
  fs::copy(r.out, pristine, fs::copy_options::recursive);
  const auto restore = [&] {
    fs::remove_all(r.out);
    fs::copy(pristine, r.out, fs::copy_options::recursive);
  };
  // Resuming needs more rounds than were run.
  yaml = read_file(r.spec);
  yaml.replace(yaml.find("rounds: 2"), 9, "rounds: 3");
  std::ofstream(r.spec) << yaml;
  const auto resume_fails_with = [&](const std::string& expected) {
    Process again({bin("zk0-aggregator"), "--spec", r.spec, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"},
                  r.dir + "/again.log");
    EXPECT_EQ(again.wait(60s), kExitError) << again.log();
    EXPECT_NE(again.log().find(expected), std::string::npos) << again.log();
  };
  // A planted model with SHA256SUMS recomputed to match: the signature does not verify.
  {
    std::string model = read_file(ckpt + "/model.safetensors");
    model[model.size() - 3] ^= 0x40;
    std::ofstream(ckpt + "/model.safetensors", std::ios::binary) << model;
    std::string sums = read_file(ckpt + "/SHA256SUMS");
    const std::string digest = to_hex(sha256(model.data(), model.size()));
    const size_t at = sums.find("  model.safetensors");
    sums.replace(at - 64, 64, digest);
    std::ofstream(ckpt + "/SHA256SUMS") << sums;
    resume_fails_with("signature does not verify");
  }
  restore();
  std::ofstream(ckpt + "/planted.safetensors") << "x";
  resume_fails_with("not listed in SHA256SUMS");
  restore();
  std::ofstream(r.out + "/checkpoints/latest") << "../../../../etc\n";
  resume_fails_with("not a round_NNNN folder");
  restore();
  fs::remove(ckpt + "/SHA256SUMS.sig");
  resume_fails_with("SHA256SUMS.sig: missing");
  // Untouched, it resumes.
  restore();
  Process again({bin("zk0-aggregator"), "--spec", r.spec, "--listen", r.address(), "--metrics-listen", "127.0.0.1:0"}, r.dir + "/resume.log");
  r.start_worker("c0");
  r.start_worker("c1");
  EXPECT_EQ(again.wait(120s), 0) << again.log();
  EXPECT_NE(again.log().find("next_round=3"), std::string::npos) << again.log();
}

// Session ids were 64 bits of mt19937_64: now 16 bytes from the OS, never repeated, and one
// stolen id does not let another certificate's holder act (tested under mutual TLS in
// federation_test); unknown and malformed ones are refused.
TEST(Abuse, SessionIdsAreUnguessableAndForgedOnesRefused) {
  LiveRun r("sessions", 2, 1, {{"localSteps", "100000"}});
  r.start_aggregator();
  Attacker a(r.address()), b(r.address());
  ASSERT_TRUE(a.register_as("c0", r.frozen_digest()).ok());
  ASSERT_TRUE(b.register_as("c1", r.frozen_digest()).ok());
  EXPECT_EQ(a.session().size(), 32u);
  EXPECT_EQ(a.session().find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a.session(), b.session());
  const std::string first = a.session();
  ASSERT_TRUE(a.register_as("c0", r.frozen_digest()).ok());  // a rejoin gets a fresh id, the old one dies
  EXPECT_NE(a.session(), first);
  Attacker forger(r.address());
  for (const std::string& forged : {first, std::string(32, '0'), std::string(1 << 20, 'a'), std::string()}) {
    v1::HeartbeatRequest req;
    req.set_session_id(forged);
    req.set_state("idle");
    v1::HeartbeatReply reply;
    grpc::ClientContext ctx;
    EXPECT_EQ(forger.stub().Heartbeat(&ctx, req, &reply).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // One upload per client at a time.
  a.heartbeat("idle");
  const v1::Instruction ins = a.poll_until_train();
  ASSERT_EQ(ins.kind(), v1::Instruction::TRAIN) << r.logs();
  v1::UploadHeader header;
  header.set_session_id(a.session());
  header.set_round(ins.round());
  header.set_base_digest(ins.parameters_digest());
  sign_upload_header(header, "test-run", a.name(), ins.parameters_digest());
  IdleUpload first_upload(a.stub(), &header);
  ASSERT_TRUE(wait_until([&] { return aggregator_logged(r, "event=upload_started client=c0"); }, 10s)) << r.aggregator->log();
  const grpc::Status second = a.upload(ins, a.download(ins), 640);
  EXPECT_EQ(second.error_code(), grpc::StatusCode::ALREADY_EXISTS) << second.error_message();
  r.aggregator->signal(SIGTERM);
  EXPECT_NE(r.aggregator->wait(20s), -1);
}
