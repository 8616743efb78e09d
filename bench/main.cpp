// zk0-bench: the hot paths, each against a baseline measured in the same run.
//   zk0-bench [--smoke] [transfer|fedavg|robust|codec|decode|samples]...
//   transfer  a 100M-parameter fp32 update through the real gRPC upload and download paths
//             (SHA-256 manifest, CRC32C chunks, receiver verification) vs a plain loopback TCP
//             copy of the bytes; then the same under each codec (encode, decode and the digest of
//             the rebuilt set in the timed region), against TCP for the bytes that travel
//   fedavg    FedAvg of 8 such updates vs memcpy of the same bytes
//   robust    median, trimmed mean, Krum, Multi-Krum and Bulyan over 16 such updates (spilled to
//             disk, blockwise) vs FedAvg of the same updates and memcpy; peak RSS of each
//   decode    AV1 frames per second of our decoder vs the ffmpeg command line, same 480x640 file
//   codec     bf16, int8 and top-k 1% encode and decode of SmolVLA's 99,880,992 trainable
//             parameters vs memcpy of the same bytes; bytes on the wire vs the replaced system's
//             1.8 GB state dict (450,046,176 float32 values)
//   samples   SmolVLA-shaped batches (64 samples, 2 cameras at 480x640) from a LeRobot v3.0 dataset
//             through the prefetching loader vs building the same batches on one thread
// --smoke shrinks every size so CI can check that the benchmarks run; its figures mean nothing.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <filesystem>

#include "core/aggregation/parallel.h"
#include "core/aggregation/strategy.h"
#include "core/codec/update_codec.h"
#include "core/codec/update_delta.h"
#include "core/data/batch_loader.h"
#include "core/ledger/ledger.h"
#include "core/ledger/verify.h"
#include "core/security/local_ca.h"
#include "core/security/signing.h"
#include "core/tensor/hash.h"
#include "core/util/base64.h"
#include "core/util/fs.h"
#include "core/data/lerobot_dataset.h"
#include "core/lerobot/synth.h"
#include "core/lerobot/video_decoder.h"
#include "core/transport/channel.h"
#include "core/transport/parameter_stream.h"
#include "zk0/v1/federation.grpc.pb.h"

using namespace zk0;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// `total` float32 parameters in tensors of about SmolVLA expert sizes (0.5M elements each).
ParameterSet make_update(int64_t total, uint32_t seed) {
  ParameterSet p;
  const int64_t per = std::min<int64_t>(total, 500'000);
  uint32_t x = seed * 2654435761u + 1;
  for (int64_t done = 0, i = 0; done < total; done += per, ++i) {
    Tensor t = make_tensor("model.expert.layers." + std::to_string(i) + ".weight", DType::F32, {std::min(per, total - done)});
    float* f = t.as<float>();
    for (int64_t k = 0; k < t.numel(); ++k) f[k] = static_cast<float>(static_cast<int32_t>(x = x * 1664525u + 1013904223u)) * 1e-10f;
    p.tensors.push_back(std::move(t));
  }
  return p;
}

// Receives uploads and serves downloads with the same stream code as the aggregator's service
// (send_parameters / ParameterReceiver), without the round bookkeeping around it.
class TransferService final : public v1::Federation::Service {
 public:
  grpc::Status DownloadParameters(grpc::ServerContext*, const v1::DownloadRequest*,
                                  grpc::ServerWriter<v1::ParameterMessage>* writer) override {
    const bool sent = send_parameter_messages<v1::ParameterMessage>(
        *global_manifest, *global, chunk_bytes, [&](const v1::ParameterMessage& m) { return writer->Write(m); },
        global_checksums);
    return sent ? grpc::Status::OK : grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  }

  grpc::Status UploadUpdate(grpc::ServerContext*, grpc::ServerReader<v1::UploadMessage>* reader, v1::UploadReply* reply) override {
    ParameterReceiver receiver(expected, 2, codec);
    try {
      receive_parameter_messages<v1::UploadMessage>(*reader, receiver);
      received = receiver.finish();
      // As the aggregator does: decode against the round's global, check the decoded digest.
      if (codec.active()) received = apply_encoded_update(*global, *expected, received, receiver.manifest(), codec, aggregation_threads());
      reply->set_digest(receiver.manifest().digest_hex());
      return grpc::Status::OK;
    } catch (const std::runtime_error& e) {
      return {grpc::StatusCode::DATA_LOSS, e.what()};
    }
  }
  std::optional<Manifest> expected;
  CodecSettings codec;
  ParameterSet received;
  const ParameterSet* global = nullptr;
  // Built once per round by the aggregator, not per download.
  const Manifest* global_manifest = nullptr;
  const std::vector<uint32_t>* global_checksums = nullptr;
  uint64_t chunk_bytes = 4 << 20;
};

struct Loopback {
  TransferService service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::Federation::Stub> stub;

  explicit Loopback(const TransportSpec& transport) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    configure_server_limits(builder, transport);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
    stub = v1::Federation::NewStub(make_channel("127.0.0.1:" + std::to_string(port), transport));
    grpc::ClientContext ctx;  // connect first: the figures are transfers, not the TCP handshake
    v1::HeartbeatReply r;
    stub->Heartbeat(&ctx, v1::HeartbeatRequest(), &r);
  }
  ~Loopback() { server->Shutdown(); }
};

// What the aggregator serves a worker: the whole global, or under a codec the encoded step to it
// from the global the worker holds (made once per round, outside the timed region).
struct Served {
  ParameterSet parameters;
  Manifest manifest;
};

// One download of `served` into a worker holding `held` (under a codec) that must end with
// parameters whose manifest digest is `target`. The worker's decode and digest are timed.
double grpc_download_seconds(const Served& served, const ParameterSet& held, const Manifest& layout, const std::string& target,
                             const TransportSpec& transport) {
  Loopback loop(transport);
  const std::vector<uint32_t> checksums = chunk_checksums(served.parameters, loop.service.chunk_bytes);
  loop.service.global = &served.parameters;
  loop.service.global_manifest = &served.manifest;
  loop.service.global_checksums = &checksums;
  const CodecSettings& codec = transport.compression.codec;
  const auto start = Clock::now();
  grpc::ClientContext ctx;
  auto reader = loop.stub->DownloadParameters(&ctx, v1::DownloadRequest());
  ParameterReceiver receiver(layout, 2, codec, ParameterReceiver::Plain::Accepted);  // the worker knows its trainable layout
  receive_parameter_messages<v1::ParameterMessage>(*reader, receiver);
  const grpc::Status s = reader->Finish();
  ParameterSet received = receiver.finish();
  std::string reached = receiver.manifest().digest_hex();
  if (codec.active()) {
    received = apply_encoded_update(held, layout, received, receiver.manifest(), codec, aggregation_threads());
    reached = build_manifest(received, aggregation_threads()).digest_hex();
  }
  const double seconds = seconds_since(start);
  if (!s.ok() || reached != target) throw std::runtime_error("bench download failed");
  return seconds;
}

// One upload of `trained` (from `global`, under a codec encoded as a delta: encoding, the
// sender's hashes, the aggregator's decode and digest check all in the timed region). Returns the
// seconds and sets the bytes that travelled.
double grpc_upload_seconds(const ParameterSet& trained, const ParameterSet& global, const TransportSpec& transport, uint64_t& travelled) {
  Loopback loop(transport);
  loop.service.expected = build_manifest(trained);  // the aggregator knows the layout in advance
  loop.service.codec = transport.compression.codec;
  loop.service.global = &global;
  auto& stub = loop.stub;
  const auto start = Clock::now();
  EncodedUpdate encoded;
  if (transport.compression.codec.active())
    encoded = encode_trained_update(trained, global, transport.compression.codec, nullptr, aggregation_threads());
  const ParameterSet& sent = transport.compression.codec.active() ? encoded.encoded : trained;
  // The sender hashes inside the timed region.
  const Manifest manifest = transport.compression.codec.active() ? encoded.manifest : build_manifest(trained, aggregation_threads());
  grpc::ClientContext ctx;
  v1::UploadReply reply;
  auto writer = stub->UploadUpdate(&ctx, &reply);
  send_parameter_messages<v1::UploadMessage>(manifest, sent, transport.chunk_bytes,
                                             [&](const v1::UploadMessage& m) { return writer->Write(m); });
  writer->WritesDone();
  const grpc::Status s = writer->Finish();
  const double seconds = seconds_since(start);
  if (!s.ok() || reply.digest() != manifest.digest_hex()) throw std::runtime_error("bench upload failed: " + s.error_message());
  travelled = manifest.total_bytes();
  return seconds;
}

double tcp_copy_seconds(const ParameterSet& update) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  listen(listener, 1);
  const uint64_t total = update.total_bytes();
  Buffer sink(total);
  std::thread receiver([&] {
    const int fd = accept(listener, nullptr, nullptr);
    uint64_t got = 0;
    while (got < total) {
      const ssize_t n = read(fd, sink.data() + got, total - got);
      if (n <= 0) break;
      got += static_cast<uint64_t>(n);
    }
    close(fd);
  });
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  const auto start = Clock::now();
  for (const auto& t : update.tensors)
    for (uint64_t sent = 0; sent < t.bytes.size();) {
      const ssize_t n = write(fd, t.bytes.data() + sent, t.bytes.size() - sent);
      if (n <= 0) throw std::runtime_error("tcp write failed");
      sent += static_cast<uint64_t>(n);
    }
  receiver.join();
  const double seconds = seconds_since(start);
  close(fd);
  close(listener);
  return seconds;
}

// goal 0: a figure reported without one.
void report(const char* name, const std::string& figure, double ratio, const char* baseline, double goal) {
  std::printf("%-9s %s  ratio=%.2f vs %s", name, figure.c_str(), ratio, baseline);
  if (goal > 0) std::printf(" (goal >= %.1f)", goal);
  std::printf("\n");
}

std::string format(const char* fmt, double a, double b) {
  char buf[160];
  std::snprintf(buf, sizeof buf, fmt, a, b);
  return buf;
}

void bench_transfer(int64_t params) {
  const ParameterSet global = make_update(params, 1);
  // A round's training moves the global a little: the update is the global plus a small delta.
  const ParameterSet trained = combine(global, make_update(params, 2), 1.0f, aggregation_threads());
  const double mb = static_cast<double>(global.total_bytes()) / 1e6;
  const Manifest layout = build_manifest(global), trained_manifest = build_manifest(trained);
  double best_tcp = 1e9;
  for (int i = 0; i < 3; ++i) best_tcp = std::min(best_tcp, tcp_copy_seconds(global));
  const double tcp_rate = mb / best_tcp;
  std::printf("transfer  loopback TCP %.0f MB/s (%.3f s for %.0f MB)\n", tcp_rate, best_tcp, mb);
  for (const CodecSettings& codec : {CodecSettings{}, CodecSettings{CodecKind::Bf16}, CodecSettings{CodecKind::Int8, 4096},
                                     CodecSettings{CodecKind::TopK, 0, 0.01}}) {
    TransportSpec transport;
    transport.compression.codec = codec;
    const std::string name = codec.active() ? codec_name(codec.kind) : "float32";
    // The download: the whole global, or the encoded step the aggregator made from the held global.
    Served served{trained, trained_manifest};
    std::string target = trained_manifest.digest_hex();
    if (codec.active()) {
      const EncodedUpdate step = encode_trained_update(trained, global, codec, nullptr, aggregation_threads());
      served = {step.encoded, step.manifest};
      target = build_manifest(combine(global, step.decoded, 1.0f, aggregation_threads())).digest_hex();
    }
    const double down_mb = static_cast<double>(served.manifest.total_bytes()) / 1e6;
    double best_up = 1e9, best_down = 1e9;
    uint64_t travelled = 0;
    for (int i = 0; i < 3; ++i) {  // best of three: the figure of a warm machine
      best_down = std::min(best_down, grpc_download_seconds(served, global, layout, target, transport));
      best_up = std::min(best_up, grpc_upload_seconds(trained, global, transport, travelled));
    }
    const double up_mb = static_cast<double>(travelled) / 1e6;
    // The ratio counts the bytes that travel; "float32 equivalent" is what the link would have
    // needed to carry the same update uncompressed in that time.
    report(("down " + name).c_str(),
           format("%.0f MB/s of %.1f MB, receiver verifies and rebuilds", down_mb / best_down, down_mb) +
               format(" (%.3f s; %.0f MB/s float32 equivalent)", best_down, mb / best_down),
           down_mb / best_down / tcp_rate, "loopback TCP", codec.active() ? 0.0 : 0.5);
    report(("up " + name).c_str(),
           format("%.0f MB/s of %.1f MB, sender encodes and hashes", up_mb / best_up, up_mb) +
               format(" (%.3f s; %.0f MB/s float32 equivalent)", best_up, mb / best_up),
           up_mb / best_up / tcp_rate, "loopback TCP", codec.active() ? 0.0 : 0.5);
  }
}

void bench_fedavg(int64_t params, int clients) {
  std::vector<ParameterSet> updates;
  for (int i = 0; i < clients; ++i) updates.push_back(make_update(params, static_cast<uint32_t>(i + 2)));
  const uint64_t bytes = updates[0].total_bytes() * static_cast<uint64_t>(clients);
  FederationSpec spec;
  spec.strategy.type = StrategyType::FedAvg;
  auto strategy = make_strategy(spec, std::filesystem::temp_directory_path() / "zk0-bench-scratch");
  const auto global = std::make_shared<const ParameterSet>(make_update(params, 1));
  Buffer copy(bytes);
  double best_avg = 1e9, best_copy = 1e9;
  for (int rep = 0; rep < 3; ++rep) {
    auto start = Clock::now();
    uint64_t offset = 0;
    for (const auto& u : updates)
      for (const auto& t : u.tensors) {
        std::memcpy(copy.data() + offset, t.bytes.data(), t.bytes.size());
        offset += t.bytes.size();
      }
    best_copy = std::min(best_copy, seconds_since(start));
    start = Clock::now();
    auto agg = strategy->begin_aggregation(global);
    for (int i = 0; i < clients; ++i) agg->add("c" + std::to_string(i), updates[static_cast<size_t>(i)], 1.0 / clients);
    const ParameterSet out = agg->finish().parameters;
    best_avg = std::min(best_avg, seconds_since(start));
  }
  const double gb = static_cast<double>(bytes) / 1e9;
  report("fedavg", format("%.2f GB/s of updates folded (%.3f s", gb / best_avg, best_avg) +
                       format(" for %.0f updates), memcpy %.2f GB/s", clients, gb / best_copy),
         best_copy / best_avg, "memcpy", 0.5);
}

void bench_codec(int64_t params) {
  const ParameterSet update = make_update(params, 7);
  const Manifest layout = build_manifest(update);
  const double bytes = static_cast<double>(update.total_bytes()), gb = bytes / 1e9;
  const double replaced = 450'046'176.0 * 4;  // zk0.md: the whole state dict, float32, each way
  const int threads = aggregation_threads();
  Buffer copy(update.total_bytes());
  double best_copy = 1e9;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = Clock::now();
    uint64_t offset = 0;
    for (const auto& t : update.tensors) {
      std::memcpy(copy.data() + offset, t.bytes.data(), t.bytes.size());
      offset += t.bytes.size();
    }
    best_copy = std::min(best_copy, seconds_since(start));
  }
  struct Case {
    CodecSettings codec;
    double goal_fraction;  // of the replaced system's bytes
  };
  for (const Case& c : {Case{{CodecKind::Bf16}, 1.0 / 9}, Case{{CodecKind::Int8, 4096}, 1.0 / 18}, Case{{CodecKind::TopK, 0, 0.01}, 1.0 / 100}}) {
    double best_encode = 1e9, best_decode = 1e9;
    uint64_t encoded_bytes = 0;
    double error = 0, norm = 0;
    for (int rep = 0; rep < 3; ++rep) {
      auto start = Clock::now();
      const ParameterSet encoded = encode_update(update, c.codec, threads);
      best_encode = std::min(best_encode, seconds_since(start));
      start = Clock::now();
      const ParameterSet decoded = decode_update(encoded, layout, c.codec, threads);
      best_decode = std::min(best_decode, seconds_since(start));
      encoded_bytes = encoded.total_bytes();
      if (rep == 0)
        for (size_t i = 0; i < update.tensors.size(); ++i)
          for (int64_t k = 0; k < update.tensors[i].numel(); ++k) {
            const double a = update.tensors[i].as<float>()[k], d = decoded.tensors[i].as<float>()[k];
            error += (a - d) * (a - d);
            norm += a * a;
          }
    }
    const double full_size = static_cast<double>(encoded_bytes) * (99'880'992.0 / static_cast<double>(params));
    char figure[400];
    std::snprintf(figure, sizeof figure,
                  "%-5s encode %.2f GB/s, decode %.2f GB/s of fp32 (memcpy %.2f GB/s); %.1f MB at SmolVLA's size = 1/%.0f of 1.8 GB "
                  "(goal 1/%.0f: %s); relative L2 error %.2g",
                  codec_name(c.codec.kind), gb / best_encode, gb / best_decode, gb / best_copy, full_size / 1e6, replaced / full_size,
                  1 / c.goal_fraction, full_size <= c.goal_fraction * replaced ? "met" : "MISSED", std::sqrt(error / norm));
    report("codec", figure, best_copy / std::max(best_encode, best_decode), "memcpy", 0.5);
  }
}

// Peak resident memory since the last reset, in bytes (VmHWM); writing 5 to clear_refs resets it.
uint64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

// Each rule over `clients` updates made one at a time (so the bench never holds them all, as the
// aggregator never does): seconds to add them all and finish, and the peak RSS meanwhile.
void bench_robust(int64_t params, int clients, int f) {
  const auto global = std::make_shared<const ParameterSet>(make_update(params, 1));
  const double bytes = static_cast<double>(global->total_bytes()) * clients;
  const std::string scratch = std::filesystem::temp_directory_path() / ("zk0-bench-" + std::to_string(getpid())) / "scratch";
  Buffer copy(global->total_bytes());
  double best_copy = 1e9;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = Clock::now();
    uint64_t offset = 0;
    for (const auto& t : global->tensors) {
      std::memcpy(copy.data() + offset, t.bytes.data(), t.bytes.size());
      offset += t.bytes.size();
    }
    best_copy = std::min(best_copy, seconds_since(start));
  }
  const double memcpy_gbs = static_cast<double>(global->total_bytes()) / 1e9 / best_copy;
  const auto run = [&](StrategySpec spec, uint64_t& peak) {
    reset_peak_rss();
    auto agg = make_aggregation(spec, global, scratch);
    double seconds = 0;
    for (int i = 0; i < clients; ++i) {
      ParameterSet u = make_update(params, static_cast<uint32_t>(i + 2));
      // Spread the updates around the global like honest clients' deltas.
      for (size_t t = 0; t < u.tensors.size(); ++t) {
        float* x = u.tensors[t].as<float>();
        const float* g = global->tensors[t].as<float>();
        for (int64_t k = 0; k < u.tensors[t].numel(); ++k) x[k] = g[k] + 1e-3f * x[k];
      }
      const auto start = Clock::now();
      agg->add("c" + std::to_string(i), u, 1.0 / clients);
      seconds += seconds_since(start);
    }
    const auto start = Clock::now();
    const AggregationResult result = agg->finish();
    seconds += seconds_since(start);
    peak = peak_rss_bytes();  // the whole process: the global, one update being added, buffers, result
    return seconds;
  };
  StrategySpec mean;
  uint64_t mean_peak = 0;
  const double mean_seconds = run(mean, mean_peak);
  std::printf("robust    %d updates: FedAvg %.2f GB/s (%.2f s), memcpy %.2f GB/s, FedAvg peak RSS %.2f GB\n", clients,
              bytes / 1e9 / mean_seconds, mean_seconds, memcpy_gbs, static_cast<double>(mean_peak) / 1e9);
  const double one_update_gb = static_cast<double>(global->total_bytes()) / 1e9;
  for (AggregationRule r : {AggregationRule::Median, AggregationRule::TrimmedMean, AggregationRule::Krum, AggregationRule::MultiKrum,
                            AggregationRule::Bulyan}) {
    StrategySpec spec;
    spec.aggregation.rule = r;
    spec.aggregation.byzantine = f;
    spec.aggregation.select = clients - f;
    spec.aggregation.trim_fraction = 0.2;
    spec.clipping.quantile = 0.9;
    uint64_t peak = 0;
    const double seconds = run(spec, peak);
    const std::string name = to_string(r);
    report(name.c_str(),
           format("%.2f GB/s of updates (%.2f s", bytes / 1e9 / seconds, seconds) +
               format(", peak RSS %.2f GB = %.1f updates)", static_cast<double>(peak) / 1e9, static_cast<double>(peak) / 1e9 / one_update_gb),
           mean_seconds / seconds, "FedAvg", 0.1);
  }
}

// A LeRobot v3.0 dataset with 2 cameras, written once per run into a temporary folder.
std::string bench_dataset(bool smoke) {
  const std::string root = std::filesystem::temp_directory_path() / ("zk0-bench-" + std::to_string(getpid())) / "ds";
  if (std::filesystem::exists(root)) return root;
  lerobot::SynthOptions o;
  o.root = root;
  o.version = "v3.0";
  o.cameras = 2;
  o.height = smoke ? 96 : 480;
  o.width = smoke ? 128 : 640;
  o.trajectories = {"stack the cubes", smoke ? 2 : 4, smoke ? 20 : 100, 1};
  std::filesystem::create_directories(std::filesystem::path(root).parent_path());
  lerobot::write_synthetic_dataset(o);
  return root;
}

void bench_decode(bool smoke) {
  const std::string root = bench_dataset(smoke);
  const std::string file = root + "/videos/observation.images.front/chunk-000/file-000.mp4";
  double best_ours = 1e9, best_cli = 1e9;
  int64_t frames = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto start = Clock::now();
    lerobot::VideoDecoder decoder(file, 0);  // FFmpeg's automatic threading, as the CLI uses
    frames = decoder.count_frames();
    best_ours = std::min(best_ours, seconds_since(start));
    start = Clock::now();
    const std::string cmd = "ffmpeg -v error -i " + file + " -f rawvideo -pix_fmt rgb24 -y /dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("ffmpeg failed: " + cmd);
    best_cli = std::min(best_cli, seconds_since(start));
  }
  const double ours = static_cast<double>(frames) / best_ours, cli = static_cast<double>(frames) / best_cli;
  report("decode", format("%.0f frames/s to RGB (%.0f frames", ours, static_cast<double>(frames)) + format("), ffmpeg CLI %.0f frames/s", cli, 0),
         ours / cli, "ffmpeg CLI", 0.8);
}

void bench_samples(bool smoke) {
  const std::string root = bench_dataset(smoke);
  LeRobotDataset dataset(root, {}, 50);
  const int64_t batch = smoke ? 8 : 64, batches = smoke ? 2 : 6;
  const int workers = BatchLoader::default_workers();
  ShuffledSampler sampler(dataset.size(), batch, 1);
  auto start = Clock::now();
  {
    BatchLoader loader(dataset, [&] { return sampler.next_batch(); }, batches, workers, 2 * workers);
    for (int64_t k = 0; k < batches; ++k) loader.next();
  }
  const double pooled = static_cast<double>(batch * batches) / seconds_since(start);
  LeRobotDataset fresh(root, {}, 50);  // no decoder warmed up by the run above
  ShuffledSampler again(fresh.size(), batch, 1);
  start = Clock::now();
  for (int64_t k = 0; k < batches; ++k) {
    std::vector<Sample> samples;
    for (int64_t i : again.next_batch()) samples.push_back(fresh.get(i));
    collate(samples, fresh.state_stats(), fresh.action_stats());
  }
  const double serial = static_cast<double>(batch * batches) / seconds_since(start);
  report("samples", format("%.0f samples/s, batches of %.0f", pooled, static_cast<double>(batch)) +
                        format(" with 2 cameras, %.0f loader threads; one thread %.0f samples/s", workers, serial),
         pooled / serial, "one thread", 1.0);
}

// The contribution ledger at a real run's scale: clients x rounds update entries with mTLS
// identities (P-256 certificates from one CA), signed by each worker and by the aggregator, written
// a round at a time with fsync, then `zk0 ledger verify`'s checks over the whole file. Baseline: the
// signature and chain checks alone (two signatures and one chain per update), in the same run.
void bench_ledger(int clients, int rounds) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("zk0-bench-" + std::to_string(getpid())) / "ledger").string();
  std::filesystem::create_directories(dir);
  std::vector<std::string> names;
  for (int c = 0; c < clients; ++c) names.push_back("c" + std::to_string(c));
  const RunCertificates certs = issue_run_certificates(dir + "/tls", "bench", names);
  const std::string ca = read_file(certs.ca_file);
  std::vector<SigningKey> keys;
  std::vector<nlohmann::json> identities;
  for (const auto& n : names) {
    keys.push_back(SigningKey::from_pem(read_file(certs.clients.at(n).key_file), n));
    identities.push_back(certificate_identity(read_file(certs.clients.at(n).cert_file)));
  }
  LedgerWriter writer(dir, SigningKey::from_pem(read_file(certs.aggregator.key_file), "aggregator"),
                      certificate_identity(read_file(certs.aggregator.cert_file)));
  const auto digest_of = [](const std::string& s) { return to_hex(sha256(s.data(), s.size())); };
  std::string global = digest_of("round 0");
  writer.start("bench", "fingerprint", global, 1);
  auto start = Clock::now();
  for (int r = 1; r <= rounds; ++r) {
    for (int c = 0; c < clients; ++c) {
      UpdateClaims claims{"bench", names[c], global, digest_of(names[c] + "/" + std::to_string(r)), r, 640, 20, 0.5, 0.5};
      const std::string text = claims.canonical();
      writer.append({{"kind", "update"}, {"run", "bench"}, {"round", r}, {"client", names[c]}, {"identity", identities[c]},
                     {"claims", text},
                     {"worker_signature", base64_encode(keys[c].sign(claims_message(text)), Base64::kStandard)},
                     {"decision", {{"client", names[c]}, {"status", "accepted"}, {"samples", 640}, {"steps", 20}, {"loss", 0.5},
                                   {"policy_loss", 0.5}, {"weight", 1.0 / clients}}}});
    }
    global = digest_of("round " + std::to_string(r));
    const std::string eval = nlohmann::json().dump();
    writer.append({{"kind", "round"}, {"run", "bench"}, {"round", r}, {"global_digest", global}, {"eval", nullptr},
                   {"eval_digest", digest_of(eval)}, {"accepted", clients}, {"discarded", 0}});
    writer.commit();
  }
  const double write_s = seconds_since(start);
  const std::string text = read_file(dir + "/" + kLedgerFile);
  start = Clock::now();
  const LedgerReport verified = verify_ledger(text, ca, {}, std::nullopt);
  const double verify_s = seconds_since(start);
  if (!verified.ok()) throw std::runtime_error("ledger bench: " + verified.problems.front());
  // The same cryptographic checks without the ledger around them.
  std::istringstream lines(text);
  std::vector<nlohmann::json> entries;
  for (std::string l; std::getline(lines, l);) entries.push_back(nlohmann::json::parse(l));
  const std::string aggregator_cert = read_file(certs.aggregator.cert_file);
  start = Clock::now();
  bool all = true;
  for (auto e : entries) {
    const std::string signature = base64_decode(e["signature"].get<std::string>(), Base64::kStandard);
    e.erase("signature");
    all &= verify_signature(aggregator_cert, entry_message(e), signature);
    if (e["kind"] != "update") continue;
    const std::string pem = e["identity"]["certificate"].get<std::string>();
    all &= certificate_chain_problem(pem, ca).empty();
    all &= verify_signature(pem, claims_message(e["claims"].get<std::string>()),
                            base64_decode(e["worker_signature"].get<std::string>(), Base64::kStandard));
  }
  const double crypto_s = seconds_since(start);
  if (!all) throw std::runtime_error("ledger bench: a signature did not verify");
  const double updates = static_cast<double>(clients) * rounds;
  std::printf("ledger    %d clients x %d rounds: %.1f MB, written %.0f updates/s (fsync a round)\n", clients, rounds,
              static_cast<double>(text.size()) / 1e6, updates / write_s);
  report("ledger", format("verify %.2f s, %.0f updates/s;", verify_s, updates / verify_s) + format(" signature and chain checks alone %.2f s, %.0f updates/s", crypto_s, updates / crypto_s),
         crypto_s / verify_s, "signature checks alone", 0);
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  std::vector<std::string> cases;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--smoke") smoke = true;
    else if (a == "transfer" || a == "fedavg" || a == "robust" || a == "codec" || a == "decode" || a == "samples" || a == "ledger")
      cases.push_back(a);
    else {
      std::cerr << "usage: zk0-bench [--smoke] [transfer|fedavg|robust|codec|decode|samples|ledger]...\n";
      return 2;
    }
  }
  if (cases.empty()) cases = {"transfer", "fedavg", "robust", "codec", "decode", "samples", "ledger"};
  const int64_t params = smoke ? 1'000'000 : 100'000'000;
  std::printf("zk0-bench: %lld fp32 parameters per update%s\n", static_cast<long long>(params), smoke ? " (smoke)" : "");
  int rc = 0;
  try {
    for (const auto& c : cases) {
      if (c == "transfer") bench_transfer(params);
      if (c == "fedavg") bench_fedavg(params, smoke ? 2 : 8);
      if (c == "robust") bench_robust(params, smoke ? 7 : 16, smoke ? 1 : 3);
      if (c == "codec") bench_codec(smoke ? params : 99'880'992);
      if (c == "decode") bench_decode(smoke);
      if (c == "samples") bench_samples(smoke);
      if (c == "ledger") bench_ledger(smoke ? 5 : 100, smoke ? 3 : 30);
    }
  } catch (const std::exception& e) {
    std::cerr << "zk0-bench: " << e.what() << "\n";
    rc = 1;
  }
  std::filesystem::remove_all(std::filesystem::temp_directory_path() / ("zk0-bench-" + std::to_string(getpid())));
  return rc;
}
