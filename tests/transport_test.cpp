// The wire protocol through real gRPC on loopback, in one process: a 100M-parameter chunked
// round trip, and an aggregator that meets corrupted, malformed and oversized input.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <thread>

#include "aggregator/coordinator.h"
#include "aggregator/service.h"
#include "core/transport/channel.h"
#include "core/transport/parameter_stream.h"
#include "core/util/fs.h"
#include "support/signed_header.h"
#include "support/test_support.h"

using namespace zk0;

namespace {

ParameterSet random_parameters(int64_t total, int tensors, uint32_t seed) {
  ParameterSet p;
  uint32_t x = seed;
  for (int i = 0; i < tensors; ++i) {
    Tensor t = make_tensor("blocks." + std::to_string(i) + ".weight", DType::F32, {total / tensors});
    float* f = t.as<float>();
    for (int64_t k = 0; k < t.numel(); ++k) f[k] = static_cast<float>((x = x * 1664525u + 1013904223u) >> 8) * 1e-7f;
    p.tensors.push_back(std::move(t));
  }
  return p;
}

// Echoes what it receives: uploads are verified with the receiver, downloads send them back.
class EchoService final : public v1::Federation::Service {
 public:
  grpc::Status UploadUpdate(grpc::ServerContext*, grpc::ServerReader<v1::UploadMessage>* reader, v1::UploadReply* reply) override {
    ParameterReceiver receiver(std::nullopt);
    v1::UploadMessage msg;
    try {
      while (reader->Read(&msg)) {
        if (msg.has_manifest()) receiver.on_manifest(msg.manifest());
        if (msg.has_chunk()) {
          receiver.on_chunk(msg.chunk());
          max_chunk = std::max<size_t>(max_chunk, msg.chunk().data().size());  // what this test is about
        }
      }
      stored = receiver.finish();
      manifest = receiver.manifest();
      reply->set_digest(manifest.digest_hex());
      return grpc::Status::OK;
    } catch (const TransferError& e) {
      return {grpc::StatusCode::DATA_LOSS, e.what()};
    }
  }
  grpc::Status DownloadParameters(grpc::ServerContext*, const v1::DownloadRequest*,
                                  grpc::ServerWriter<v1::ParameterMessage>* writer) override {
    send_parameter_messages<v1::ParameterMessage>(manifest, stored, 4 << 20,
                                                  [&](const v1::ParameterMessage& m) { return writer->Write(m); });
    return grpc::Status::OK;
  }
  ParameterSet stored;
  Manifest manifest;
  size_t max_chunk = 0;
};

}  // namespace

TEST(Transport, HundredMillionParameterRoundTripIsChunkedAndVerified) {
  const int64_t n = 100'000'000;
  const ParameterSet update = random_parameters(n, 25, 1);
  const Manifest manifest = build_manifest(update);
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  TransportSpec transport;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  configure_server_limits(builder, transport);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  auto stub = v1::Federation::NewStub(make_channel("127.0.0.1:" + std::to_string(port), transport));

  grpc::ClientContext up_ctx;
  v1::UploadReply reply;
  auto writer = stub->UploadUpdate(&up_ctx, &reply);
  ASSERT_TRUE(send_parameter_messages<v1::UploadMessage>(manifest, update, transport.chunk_bytes,
                                                         [&](const v1::UploadMessage& m) { return writer->Write(m); }));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(reply.digest(), manifest.digest_hex());
  EXPECT_EQ(service.max_chunk, transport.chunk_bytes);  // never one giant message

  grpc::ClientContext down_ctx;
  auto reader = stub->DownloadParameters(&down_ctx, v1::DownloadRequest());
  ParameterReceiver receiver(manifest);
  receive_parameter_messages<v1::ParameterMessage>(*reader, receiver);
  ASSERT_TRUE(reader->Finish().ok());
  const ParameterSet back = receiver.finish();
  EXPECT_EQ(build_manifest(back).digest_hex(), manifest.digest_hex());
  EXPECT_EQ(back.total_elements(), n);
  server->Shutdown();
}

// A stream cut short and continued from the receiver's position gives the same parameters as one
// unbroken stream, whether the sender cuts chunks as before or at another size (the point then
// falls inside a chunk); the continuation must repeat the same manifest.
TEST(Transport, ABrokenStreamContinuesFromTheLastVerifiedChunk) {
  const ParameterSet p = random_parameters(3000, 3, 5);  // three tensors of 4000 bytes
  const Manifest m = build_manifest(p);
  const auto feed = [&](ParameterReceiver& r, uint64_t chunk_bytes, StreamPosition from, size_t chunks_to_deliver) {
    size_t delivered = 0;
    return send_parameters(
        m, p, chunk_bytes,
        [&](const v1::Manifest& proto) {
          r.on_manifest(proto);
          return true;
        },
        [&](v1::Chunk& c) {
          if (delivered++ == chunks_to_deliver) return false;  // the link drops here
          r.on_chunk(c);
          return true;
        },
        nullptr, from);
  };
  for (const uint64_t second_chunk_bytes : {1000u, 1500u, 4096u}) {
    ParameterReceiver r(m);
    EXPECT_FALSE(feed(r, 1000, {}, 5));  // 5 of 12 chunks arrive
    ASSERT_TRUE(r.resumable());
    EXPECT_EQ(r.position(), (StreamPosition{1, 1000}));
    EXPECT_EQ(bytes_before(m, r.position()), 5000u);
    r.expect_continuation();
    EXPECT_TRUE(feed(r, second_chunk_bytes, r.position(), SIZE_MAX));
    EXPECT_EQ(r.bytes_received(), 12000u);
    EXPECT_EQ(build_manifest(r.finish()).digest_hex(), m.digest_hex()) << "second chunk size " << second_chunk_bytes;
  }
  // The continuation of another parameter set, and a point beyond the parameters, are refused.
  ParameterReceiver r(m);
  feed(r, 1000, {}, 3);
  r.expect_continuation();
  const ParameterSet other = random_parameters(3000, 3, 6);
  v1::Manifest other_proto;
  manifest_to_proto(build_manifest(other), &other_proto);
  try {
    r.on_manifest(other_proto);
    FAIL() << "another manifest continued the stream";
  } catch (const TransferError& e) {
    EXPECT_EQ(e.kind(), TransferError::Kind::BadManifest) << e.what();
  }
  const auto nothing = [](auto&) { return true; };
  EXPECT_THROW(send_parameters(m, p, 1000, nothing, nothing, nullptr, {1, 4001}), std::out_of_range);
  EXPECT_THROW(send_parameters(m, p, 1000, nothing, nothing, nullptr, {4, 0}), std::out_of_range);
  EXPECT_TRUE(send_parameters(m, p, 1000, nothing, nothing, nullptr, {3, 0}));  // everything arrived: nothing to send
}

TEST(Transport, ReceiverRejectsEachKindOfDamage) {
  const ParameterSet p = random_parameters(3000, 3, 2);
  const Manifest m = build_manifest(p);
  v1::Manifest proto;
  manifest_to_proto(m, &proto);
  std::vector<v1::Chunk> chunks;
  send_parameters(m, p, 1000, [](const v1::Manifest&) { return true; },
                  [&](v1::Chunk& c) {
                    chunks.push_back(c);
                    return true;
                  });
  ASSERT_EQ(chunks.size(), 12u);  // 4000 bytes per tensor in chunks of 1000
  auto expect_kind = [&](TransferError::Kind kind, const std::function<void(ParameterReceiver&)>& f) {
    ParameterReceiver r(m);
    try {
      f(r);
      FAIL() << "expected TransferError";
    } catch (const TransferError& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
    }
  };
  expect_kind(TransferError::Kind::ChunkChecksum, [&](ParameterReceiver& r) {
    r.on_manifest(proto);
    v1::Chunk bad = chunks[0];
    (*bad.mutable_data())[10] ^= 0x40;
    r.on_chunk(bad);
  });
  expect_kind(TransferError::Kind::TensorHash, [&](ParameterReceiver& r) {
    r.on_manifest(proto);
    for (size_t i = 0; i < 4; ++i) {
      v1::Chunk c = chunks[i];
      if (i == 2) {  // damaged and re-checksummed: only the tensor's SHA-256 can tell
        (*c.mutable_data())[0] ^= 1;
        c.set_crc32c(crc32c(c.data().data(), c.data().size()));
      }
      r.on_chunk(c);
    }
    for (size_t i = 4; i < chunks.size(); ++i) r.on_chunk(chunks[i]);  // the rest arrives intact
    r.finish();
  });
  expect_kind(TransferError::Kind::OutOfOrder, [&](ParameterReceiver& r) {
    r.on_manifest(proto);
    r.on_chunk(chunks[1]);
  });
  expect_kind(TransferError::Kind::OutOfOrder, [&](ParameterReceiver& r) { r.on_chunk(chunks[0]); });
  expect_kind(TransferError::Kind::Incomplete, [&](ParameterReceiver& r) {
    r.on_manifest(proto);
    r.on_chunk(chunks[0]);
    r.finish();
  });
  expect_kind(TransferError::Kind::BadManifest, [&](ParameterReceiver& r) {
    v1::Manifest bad = proto;
    bad.mutable_tensors(1)->set_byte_length(12);
    r.on_manifest(bad);
  });
  expect_kind(TransferError::Kind::BadManifest, [&](ParameterReceiver& r) {
    v1::Manifest bad = proto;
    (*bad.mutable_digest())[0] ^= 1;
    r.on_manifest(bad);
  });
  expect_kind(TransferError::Kind::LayoutMismatch, [&](ParameterReceiver& r) {
    Manifest other = build_manifest(random_parameters(3000, 2, 2));
    v1::Manifest o;
    manifest_to_proto(other, &o);
    r.on_manifest(o);
  });
}

// An aggregator in this process and a hand-driven client: the test plays a faulty worker.
class AggregatorUnderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    start(1, {{"minFitClients", "1"}, {"minAvailableClients", "1"}, {"fractionFit", "0.5"}});
  }
  // A fresh aggregator over small_spec's two clients, with `overrides`.
  void start(int rounds, std::map<std::string, std::string> overrides) {
    if (server_) {
      coordinator_->request_stop();
      if (run_.joinable()) run_.join();
      server_->Shutdown();
    }
    dir_ = test::make_temp_dir("agg");
    overrides.emplace("roundTimeoutSeconds", "30");
    overrides.emplace("chunkSize", "64Ki");
    spec_ = parse_spec(test::small_spec(dir_ + "/out", 2, rounds, overrides));
    spec_.transport.max_message_bytes = 256 << 10;
    coordinator_ = std::make_unique<Coordinator>(spec_);
    service_ = std::make_unique<FederationService>(*coordinator_, spec_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    configure_server_limits(builder, spec_.transport);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    channel_ = make_channel("127.0.0.1:" + std::to_string(port_), spec_.transport);
    stub_ = v1::Federation::NewStub(channel_);
  }
  void TearDown() override {
    coordinator_->request_stop();
    if (run_.joinable()) run_.join();
    server_->Shutdown();
  }

  std::string register_as(const std::string& name) {
    v1::RegisterRequest req;
    req.set_protocol_version(1);
    req.set_client_name(name);
    req.set_policy_type("flow-matching-mlp");
    req.set_frozen_digest(coordinator_->frozen_digest());
    req.set_dataset_samples(240);
    v1::RegisterReply reply;
    grpc::ClientContext ctx;
    EXPECT_TRUE(stub_->Register(&ctx, req, &reply).ok());
    names_[reply.session_id()] = name;
    return reply.session_id();
  }

  v1::Instruction poll_until_train(const std::string& session) {
    v1::Instruction ins;
    test::wait_until(
        [&] {
          grpc::ClientContext ctx;
          v1::PollRequest req;
          req.set_session_id(session);
          req.set_wait_ms(500);
          stub_->PollInstruction(&ctx, req, &ins);
          return ins.kind() == v1::Instruction::TRAIN;
        },
        std::chrono::seconds(20));
    return ins;
  }

  ParameterSet download(const std::string& session, const v1::Instruction& ins) {
    grpc::ClientContext ctx;
    v1::DownloadRequest req;
    req.set_session_id(session);
    req.set_round(ins.round());
    req.set_parameters_digest(ins.parameters_digest());
    auto reader = stub_->DownloadParameters(&ctx, req);
    ParameterReceiver receiver(coordinator_->trainable_layout());
    receive_parameter_messages<v1::ParameterMessage>(*reader, receiver);
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(receiver.manifest().digest_hex(), ins.parameters_digest());  // downloads are verified too
    return receiver.finish();
  }

  // Uploads `update`, trained from `base` (the instruction's) in `steps`; `tamper` may change each
  // outgoing chunk message, `forge` the signed header.
  grpc::Status upload(const std::string& session, const v1::Instruction& ins, const ParameterSet& update,
                      const std::function<void(v1::Chunk&, int)>& tamper = {}, const std::string& base = "", uint32_t steps = 2,
                      const std::function<void(v1::UploadHeader&)>& forge = {}) {
    grpc::ClientContext ctx;
    v1::UploadReply reply;
    auto writer = stub_->UploadUpdate(&ctx, &reply);
    v1::UploadMessage msg;
    msg.mutable_header()->set_session_id(session);
    msg.mutable_header()->set_round(ins.round());
    msg.mutable_header()->set_base_digest(base.empty() ? ins.parameters_digest() : base);
    msg.mutable_header()->mutable_metrics()->set_samples(steps * 32);
    msg.mutable_header()->mutable_metrics()->set_steps(steps);
    msg.mutable_header()->mutable_metrics()->set_loss(0.5);
    test::sign_upload_header(*msg.mutable_header(), spec_.name, names_.at(session), build_manifest(update).digest_hex());
    if (forge) forge(*msg.mutable_header());
    int index = 0;
    if (writer->Write(msg))
      send_parameters(
          build_manifest(update), update, spec_.transport.chunk_bytes,
          [&](const v1::Manifest& m) {
            *msg.mutable_manifest() = m;
            return writer->Write(msg);
          },
          [&](v1::Chunk& c) {
            *msg.mutable_chunk() = c;
            if (tamper) tamper(*msg.mutable_chunk(), index++);
            return writer->Write(msg);
          });
    writer->WritesDone();
    return writer->Finish();
  }

  nlohmann::json status() { return test::read_json(dir_ + "/out/status.json"); }
  // status.json is written off the coordinator's lock, at most every 250 ms: poll it.
  bool status_reaches(const std::function<bool(const nlohmann::json&)>& condition) {
    return test::wait_until(
        [&] {
          try {
            return condition(status());
          } catch (const std::exception&) {
            return false;
          }
        },
        std::chrono::seconds(10));
  }

  std::string dir_;
  FederationSpec spec_;
  std::map<std::string, std::string> names_;  // session -> client
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<FederationService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Federation::Stub> stub_;
  int port_ = 0;
  std::thread run_;
};

TEST_F(AggregatorUnderTest, CorruptedUpdatesAreRejectedCountedAndNeverAveraged) {
  const std::string session = register_as("c0");
  int rc = -1;
  run_ = std::thread([&] { rc = coordinator_->run(); });
  const v1::Instruction ins = poll_until_train(session);
  ASSERT_EQ(ins.round(), 1u);
  const ParameterSet global = download(session, ins);

  // A flipped bit in one chunk: DATA_LOSS, counted, the round still waiting for this client.
  grpc::Status s = upload(session, ins, global, [](v1::Chunk& c, int i) {
    if (i == 1) (*c.mutable_data())[5] ^= 0x10;
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  EXPECT_NE(s.error_message().find("CRC32C"), std::string::npos);
  EXPECT_TRUE(status_reaches([](const nlohmann::json& s) { return s["rejected_updates"].value("chunk_checksum", 0) == 1; }));

  // A chunk whose checksum was recomputed after damage: caught by the tensor's SHA-256.
  s = upload(session, ins, global, [](v1::Chunk& c, int i) {
    if (i == 0) {
      (*c.mutable_data())[0] ^= 1;
      c.set_crc32c(crc32c(c.data().data(), c.data().size()));
    }
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_TRUE(status_reaches([](const nlohmann::json& s) { return s["rejected_updates"].value("tensor_hash", 0) == 1; }));

  // A NaN update passes transport checks but is refused before aggregation.
  ParameterSet poisoned = global;
  poisoned.tensors[0].as<float>()[0] = NAN;
  s = upload(session, ins, poisoned);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("NaN"), std::string::npos);
  EXPECT_TRUE(status_reaches([](const nlohmann::json& s) { return s["rejected_updates"].value("non_finite", 0) == 1; }));

  // The client's one update was refused, so the round cannot use it and is repeated; the intact
  // update of the next attempt is what gets aggregated.
  const v1::Instruction retry = poll_until_train(session);
  EXPECT_EQ(retry.round(), 1u);
  ParameterSet good = download(session, retry);
  for (auto& t : good.tensors)
    for (int64_t k = 0; k < t.numel(); ++k) t.as<float>()[k] += 1.0f;
  EXPECT_TRUE(upload(session, retry, good).ok());
  run_.join();
  EXPECT_EQ(rc, 0);
  const auto metrics = test::read_json(dir_ + "/out/federated_metrics.json");
  const auto& round1 = metrics["rounds"][1];
  EXPECT_EQ(round1["attempts"], 2);
  EXPECT_EQ(round1["clients_accepted"], 1);
  // Only the intact update was averaged: the global moved by exactly +1 per parameter.
  const double expected = std::sqrt(static_cast<double>(global.total_elements()));
  EXPECT_NEAR(round1["global_update_norm"].get<double>(), expected, 1e-3 * expected);
}

// The contribution ledger's claims: an update without a signature, with one another key made, or
// whose signed claims are not what arrives is refused before it is read, and recorded.
TEST_F(AggregatorUnderTest, UnsignedForgedOrMismatchedClaimsAreRefusedAndRecordedInTheLedger) {
  start(1, {{"minFitClients", "1"}, {"minAvailableClients", "1"}, {"fractionFit", "0.5"}, {"maxRoundAttempts", "maxRoundAttempts: 4"}});
  const std::string session = register_as("c0");
  int rc = -1;
  run_ = std::thread([&] { rc = coordinator_->run(); });
  struct Case {
    std::string reason;
    std::function<void(v1::UploadHeader&)> forge;
  };
  const SigningKey other = SigningKey::load_or_create_ed25519("");
  const std::vector<Case> cases = {
      {"unsigned", [](v1::UploadHeader& h) { h.clear_claims_signature(); }},
      {"bad_signature", [&](v1::UploadHeader& h) { h.set_claims_signature(other.sign(claims_message(h.claims()))); }},
      {"claims_mismatch", [&](v1::UploadHeader& h) {
         // Signed correctly, but claiming more samples than the upload reports.
         UpdateClaims c = UpdateClaims::parse(h.claims());
         c.samples += 1;
         h.set_claims(c.canonical());
         h.set_claims_signature(other.sign(claims_message(h.claims())));
         h.set_signing_key(other.public_key_pem());
       }},
  };
  for (const Case& c : cases) {
    const v1::Instruction ins = poll_until_train(session);
    const grpc::Status s = upload(session, ins, download(session, ins), {}, "", 2, c.forge);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.reason << ": " << s.error_message();
    EXPECT_TRUE(status_reaches([&](const nlohmann::json& st) { return st["rejected_updates"].value(c.reason, 0) == 1; })) << c.reason;
  }
  const v1::Instruction ins = poll_until_train(session);
  EXPECT_TRUE(upload(session, ins, download(session, ins)).ok());
  run_.join();
  EXPECT_EQ(rc, 0);
  std::vector<std::string> reasons;
  std::istringstream ledger(read_file(dir_ + "/out/ledger.jsonl"));
  for (std::string line; std::getline(ledger, line);) {
    const auto e = nlohmann::json::parse(line);
    if (e["kind"] == "update") reasons.push_back(e["decision"].value("reason", e["decision"]["status"].get<std::string>()));
  }
  EXPECT_EQ(reasons, (std::vector<std::string>{"unsigned", "bad_signature", "claims_mismatch", "accepted"}));
  int verified = -1;
  const std::string verdict = test::run_command(test::bin("zk0") + " ledger verify " + dir_ + "/out 2>&1", &verified);
  EXPECT_EQ(verified, 0) << verdict;
}

TEST_F(AggregatorUnderTest, MalformedAndOversizedMessagesGetErrorsNotCrashes) {
  const std::string session = register_as("c0");
  run_ = std::thread([&] { coordinator_->run(); });
  const v1::Instruction ins = poll_until_train(session);
  const ParameterSet global = download(session, ins);

  // Bytes that are not a protobuf message at all.
  grpc::GenericStub generic(channel_);
  const char garbage[] = "\xff\xff\xff\xff\x0f not protobuf";
  grpc::Slice slice(garbage, sizeof garbage);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::ClientContext ctx;
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  grpc::Status garbled;
  generic.UnaryCall(&ctx, "/zk0.v1.Federation/Register", grpc::StubOptions(), &request, &response, [&](grpc::Status st) {
    std::lock_guard<std::mutex> lock(m);
    garbled = st;
    done = true;
    cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lock(m);
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; });
  }
  EXPECT_FALSE(garbled.ok());

  // A chunk larger than maxMessageSize: refused by gRPC itself.
  grpc::Status s = upload(session, ins, global, [](v1::Chunk& c, int i) {
    if (i == 0) c.mutable_data()->append(300 << 10, 'x');
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();

  // An upload that does not start with its header.
  {
    grpc::ClientContext c2;
    v1::UploadReply reply;
    auto writer = stub_->UploadUpdate(&c2, &reply);
    v1::UploadMessage msg;
    msg.mutable_chunk()->set_data("x");
    writer->Write(msg);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // A manifest of another model: refused before any allocation.
  ParameterSet other = random_parameters(1000, 1, 3);
  // (The handlers of the refused streams above may still be ending: one upload per client at a time.)
  ASSERT_TRUE(test::wait_until([&] { return (s = upload(session, ins, other)).error_code() != grpc::StatusCode::ALREADY_EXISTS; }, std::chrono::seconds(10)))
      << s.error_message();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("manifest"), std::string::npos);
  // Unknown session, unknown client, wrong frozen part, wrong protocol version.
  {
    grpc::ClientContext c3;
    v1::HeartbeatRequest hb;
    hb.set_session_id("nope");
    v1::HeartbeatReply r;
    EXPECT_EQ(stub_->Heartbeat(&c3, hb, &r).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  auto try_register = [&](const std::string& name, const std::string& digest, uint32_t version) {
    grpc::ClientContext c4;
    v1::RegisterRequest req;
    req.set_protocol_version(version);
    req.set_client_name(name);
    req.set_policy_type("flow-matching-mlp");
    req.set_frozen_digest(digest);
    v1::RegisterReply reply;
    return stub_->Register(&c4, req, &reply).error_code();
  };
  EXPECT_EQ(try_register("intruder", coordinator_->frozen_digest(), 1), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(try_register("c1", std::string(64, '0'), 1), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(try_register("c1", coordinator_->frozen_digest(), 2), grpc::StatusCode::FAILED_PRECONDITION);
  // After all that the aggregator still serves: a good update completes the run.
  EXPECT_TRUE(upload(session, ins, global).ok());
  run_.join();
  EXPECT_EQ(status()["phase"], "Succeeded");
}

namespace {

// Flips one byte in the first chunk of the first `streams` calls of one method: a download's
// response after the service computed its CRC, or an upload as the service receives it. Damage in
// transit, as a faulty NIC or proxy would cause.
class DamageChunks final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  enum class Direction { Download, Upload };
  DamageChunks(Direction direction, int streams) : direction_(direction), remaining_(streams) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    const char* method = direction_ == Direction::Download ? "/zk0.v1.Federation/DownloadParameters" : "/zk0.v1.Federation/UploadUpdate";
    if (std::string(info->method()) != method) return nullptr;
    return new Damage(direction_, remaining_.fetch_sub(1) > 0);
  }

 private:
  class Damage final : public grpc::experimental::Interceptor {
   public:
    Damage(Direction direction, bool active) : direction_(direction), active_(active) {}
    void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
      using Hook = grpc::experimental::InterceptionHookPoints;
      if (active_ && direction_ == Direction::Download && methods->QueryInterceptionHookPoint(Hook::PRE_SEND_MESSAGE)) {
        const auto* msg = static_cast<const v1::ParameterMessage*>(methods->GetSendMessage());
        if (msg && msg->has_chunk()) {
          copy_ = *msg;
          (*copy_.mutable_chunk()->mutable_data())[0] ^= 0x01;
          methods->ModifySendMessage(&copy_);
          active_ = false;
        }
      }
      if (active_ && direction_ == Direction::Upload && methods->QueryInterceptionHookPoint(Hook::POST_RECV_MESSAGE)) {
        auto* msg = static_cast<v1::UploadMessage*>(methods->GetRecvMessage());
        if (msg && msg->has_chunk()) {
          (*msg->mutable_chunk()->mutable_data())[0] ^= 0x01;
          active_ = false;
        }
      }
      methods->Proceed();
    }

   private:
    Direction direction_;
    bool active_;
    v1::ParameterMessage copy_;
  };
  Direction direction_;
  std::atomic<int> remaining_;
};

// One round with one real worker process whose first two transfers in `direction` arrive damaged.
nlohmann::json round_with_damaged_transfers(DamageChunks::Direction direction, int transfer_attempts, std::string& worker_log) {
  const std::string dir = test::make_temp_dir("damaged");
  const std::string spec_path = test::write_spec(
      dir, test::small_spec(dir + "/out", 1, 1,
                            {{"minFitClients", "1"}, {"minAvailableClients", "1"}, {"maxRoundAttempts", "maxRoundAttempts: 2"},
                             {"transferAttempts", std::to_string(transfer_attempts)}}));
  const FederationSpec spec = load_spec(spec_path);
  Coordinator coordinator(spec);
  FederationService service(coordinator, spec);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<DamageChunks>(direction, 2));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  auto server = builder.BuildAndStart();
  test::Process worker({test::bin("zk0-worker"), "--spec", spec_path, "--client", "c0", "--aggregator",
                        "127.0.0.1:" + std::to_string(port), "--metrics-listen", "127.0.0.1:0"},
                       dir + "/c0.log");
  EXPECT_EQ(coordinator.run(), 0);
  coordinator.drain(std::chrono::seconds(5));
  EXPECT_EQ(worker.wait(std::chrono::seconds(20)), 0);
  server->Shutdown();
  worker_log = worker.log();
  return test::read_json(dir + "/out/federated_metrics.json")["rounds"][1];
}

}  // namespace

TEST(TransferAttempts, DamagedDownloadsAreRetriedWithinTheBound) {
  std::string log;
  const auto round = round_with_damaged_transfers(DamageChunks::Direction::Download, 3, log);
  EXPECT_EQ(round["attempts"], 1) << round.dump(2);  // two damaged streams, the third arrived intact
  EXPECT_EQ(round["clients_accepted"], 1);
  EXPECT_NE(log.find("event=download_failed round=1 failures=2 bytes_kept=0 error=\"chunk_checksum"), std::string::npos) << log;
}

TEST(TransferAttempts, ExhaustedAttemptsFailTheClientForTheRound) {
  std::string log;
  const auto round = round_with_damaged_transfers(DamageChunks::Direction::Download, 2, log);
  // Two attempts were both damaged: the worker reported the failure at once, the round lost its
  // quorum and its second attempt (with intact downloads) succeeded.
  ASSERT_EQ(round["attempts"], 2) << round.dump(2);
  const auto& failed = round["failed_attempts"][0]["clients"][0];
  EXPECT_EQ(failed["status"], "failed");
  EXPECT_NE(failed["reason"].get<std::string>().find("download failed 2 times"), std::string::npos) << failed.dump();
  EXPECT_EQ(round["clients_accepted"], 1);
}

// An upload damaged on its way in: DATA_LOSS, counted; the real worker sends it again and the
// round takes the intact copy.
TEST(TransferAttempts, ARealWorkerRetriesADamagedUpload) {
  std::string log;
  const auto round = round_with_damaged_transfers(DamageChunks::Direction::Upload, 3, log);
  EXPECT_EQ(round["attempts"], 1) << round.dump(2);
  EXPECT_EQ(round["clients_accepted"], 1);
  EXPECT_EQ(round["clients"][0]["transfer_rejections"], 2) << round.dump(2);
  EXPECT_NE(log.find("event=upload_failed round=1 failures=1 bytes_kept=0 status=\"code=15"), std::string::npos) << log;  // DATA_LOSS
  EXPECT_NE(log.find("event=update_uploaded round=1"), std::string::npos) << log;
}

// The two refusals a well-formed upload can still meet: trained from parameters that are not the
// round's (stale_base), or reporting no training at all (no_samples). Each is counted, never
// averaged, and the round is repeated for a client that has nothing left to send.
TEST_F(AggregatorUnderTest, StaleAndEmptyUpdatesAreRefusedAndCounted) {
  const std::string session = register_as("c0");
  int rc = -1;
  run_ = std::thread([&] { rc = coordinator_->run(); });
  const auto upload_with = [&](const v1::Instruction& ins, const std::string& base, uint32_t steps) {
    return upload(session, ins, download(session, ins), {}, base, steps);
  };
  v1::Instruction ins = poll_until_train(session);
  grpc::Status s = upload_with(ins, std::string(64, 'a'), 2);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("not this round's global parameters"), std::string::npos) << s.error_message();
  EXPECT_TRUE(status_reaches([](const nlohmann::json& st) { return st["rejected_updates"].value("stale_base", 0) == 1; }));
  ins = poll_until_train(session);  // the round's second attempt
  s = upload_with(ins, ins.parameters_digest(), 0);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("no trained samples"), std::string::npos) << s.error_message();
  EXPECT_TRUE(status_reaches([](const nlohmann::json& st) { return st["rejected_updates"].value("no_samples", 0) == 1; }));
  ins = poll_until_train(session);  // the third
  EXPECT_TRUE(upload_with(ins, ins.parameters_digest(), 2).ok());
  run_.join();
  EXPECT_EQ(rc, 0);
  const auto round1 = test::read_json(dir_ + "/out/federated_metrics.json")["rounds"][1];
  EXPECT_EQ(round1["attempts"], 3);
  EXPECT_EQ(round1["failed_attempts"][0]["clients"][0]["reason"], "stale_base");
  EXPECT_EQ(round1["failed_attempts"][1]["clients"][0]["reason"], "no_samples");
}

// FedBuff's rules over the real protocol, one step at a time: with a buffer of one update and
// maxStaleness 1, an update two versions late is refused (too_stale) and one a version late joins
// the newer global as its delta times 1/sqrt(2).
TEST_F(AggregatorUnderTest, AsynchronousRoundsWeighAndRefuseStaleUpdates) {
  start(5, {{"minFitClients", "1"}, {"minAvailableClients", "2"}, {"maxRoundAttempts", ""},
            {"aggregation", "asynchronous: {maxStaleness: 1}"}});
  const std::string a = register_as("c0"), b = register_as("c1");
  int rc = -1;
  run_ = std::thread([&] { rc = coordinator_->run(); });
  const auto shifted = [](ParameterSet p, float by) {
    for (auto& t : p.tensors)
      for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] += by;
    return p;
  };
  const auto train = [&](const std::string& session, float by) {
    const v1::Instruction ins = poll_until_train(session);
    return std::make_pair(ins, shifted(download(session, ins), by));
  };
  auto [a1, a1_update] = train(a, 0.01f);
  auto [b1, b1_update] = train(b, 0.02f);
  EXPECT_EQ(a1.round(), 1u);
  EXPECT_EQ(b1.round(), 1u);
  ASSERT_TRUE(upload(a, a1, a1_update).ok());  // version 2
  auto [a2, a2_update] = train(a, 0.01f);
  EXPECT_EQ(a2.round(), 2u);
  ASSERT_TRUE(upload(a, a2, a2_update).ok());  // version 3: b's round-1 update is now 2 behind
  grpc::Status s = upload(b, b1, b1_update);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("maxStaleness 1"), std::string::npos) << s.error_message();
  EXPECT_TRUE(status_reaches([](const nlohmann::json& st) { return st["rejected_updates"].value("too_stale", 0) == 1; }));

  auto [b3, b3_update] = train(b, 0.04f);  // from version 3 ...
  auto [a3, a3_update] = train(a, 0.01f);
  EXPECT_EQ(b3.round(), 3u);
  EXPECT_EQ(a3.round(), 3u);
  const ParameterSet g4 = a3_update;  // a buffer of one, at weight 1: the update is the next global
  ASSERT_TRUE(upload(a, a3, a3_update).ok());  // version 4
  ASSERT_TRUE(upload(b, b3, b3_update).ok());  // ... joins version 4's buffer a version late: version 5
  auto [a5, g5] = train(a, 0.f);
  EXPECT_EQ(a5.round(), 5u);
  // Version 5 = version 4 + b's delta (0.04 everywhere) / sqrt(2).
  ASSERT_EQ(g5.tensors.size(), g4.tensors.size());
  for (size_t t = 0; t < g5.tensors.size(); ++t)
    for (int64_t i = 0; i < g5.tensors[t].numel(); ++i)
      ASSERT_NEAR(g5.tensors[t].as<float>()[i], g4.tensors[t].as<float>()[i] + 0.04 / std::sqrt(2.0), 1e-5)
          << g5.tensors[t].name << "[" << i << "]";
  const ParameterSet a5_update = g5;
  ASSERT_TRUE(upload(a, a5, a5_update).ok());  // the last version
  run_.join();
  EXPECT_EQ(rc, 0);
  const auto rounds = test::read_json(dir_ + "/out/federated_metrics.json")["rounds"];
  ASSERT_EQ(rounds.size(), 6u);
  EXPECT_EQ(rounds[4]["clients"][0]["client"], "c1");
  EXPECT_EQ(rounds[4]["clients"][0]["staleness"], 1);
  EXPECT_DOUBLE_EQ(rounds[4]["clients"][0]["staleness_weight"].get<double>(), 1 / std::sqrt(2.0));
  bool refusal_recorded = false;
  for (const auto& r : rounds)
    for (const auto& x : r.value("rejected", nlohmann::json::array())) refusal_recorded |= x["client"] == "c1" && x["reason"] == "too_stale";
  EXPECT_TRUE(refusal_recorded) << rounds.dump(1);
  // Staleness per accepted update, as the Prometheus histogram has it: five updates, one stale by 1.
  const prometheus::ClientMetric staleness = coordinator_->metrics().update_staleness.Collect();
  EXPECT_EQ(staleness.histogram.sample_count, 5u);
  EXPECT_DOUBLE_EQ(staleness.histogram.sample_sum, 1.0);
}
