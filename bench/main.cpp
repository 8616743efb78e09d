// zk0-bench: the hot paths, each against a baseline measured in the same run.
//   zk0-bench [--smoke] [transfer|fedavg|robust|codec|decode|samples]...
//   transfer  a 100M-parameter fp32 update through the real gRPC upload path (SHA-256 manifest,
//             CRC32C chunks, receiver verification) vs a plain loopback TCP copy of the bytes
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
#include <thread>

#include <filesystem>

#include "core/aggregation/parallel.h"
#include "core/aggregation/strategy.h"
#include "core/codec/update_codec.h"
#include "core/data/batch_loader.h"
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
    ParameterReceiver receiver(expected);
    try {
      receive_parameter_messages<v1::UploadMessage>(*reader, receiver);
      received = receiver.finish();
      reply->set_digest(receiver.manifest().digest_hex());
      return grpc::Status::OK;
    } catch (const TransferError& e) {
      return {grpc::StatusCode::DATA_LOSS, e.what()};
    }
  }
  std::optional<Manifest> expected;
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

double grpc_download_seconds(const ParameterSet& global, const Manifest& manifest, const TransportSpec& transport) {
  Loopback loop(transport);
  const std::vector<uint32_t> checksums = chunk_checksums(global, loop.service.chunk_bytes);
  loop.service.global = &global;
  loop.service.global_manifest = &manifest;
  loop.service.global_checksums = &checksums;
  const auto start = Clock::now();
  grpc::ClientContext ctx;
  auto reader = loop.stub->DownloadParameters(&ctx, v1::DownloadRequest());
  ParameterReceiver receiver(manifest);  // the worker knows its trainable layout
  receive_parameter_messages<v1::ParameterMessage>(*reader, receiver);
  const grpc::Status s = reader->Finish();
  const ParameterSet received = receiver.finish();
  const double seconds = seconds_since(start);
  if (!s.ok() || receiver.manifest().digest != manifest.digest) throw std::runtime_error("bench download failed");
  return seconds;
}

double grpc_upload_seconds(const ParameterSet& update, const TransportSpec& transport) {
  Loopback loop(transport);
  loop.service.expected = build_manifest(update);  // the aggregator knows the layout in advance
  auto& stub = loop.stub;
  const auto start = Clock::now();
  const Manifest manifest = build_manifest(update);  // the sender hashes inside the timed region
  grpc::ClientContext ctx;
  v1::UploadReply reply;
  auto writer = stub->UploadUpdate(&ctx, &reply);
  send_parameter_messages<v1::UploadMessage>(manifest, update, transport.chunk_bytes,
                                             [&](const v1::UploadMessage& m) { return writer->Write(m); });
  writer->WritesDone();
  const grpc::Status s = writer->Finish();
  const double seconds = seconds_since(start);
  if (!s.ok() || reply.digest() != manifest.digest_hex()) throw std::runtime_error("bench upload failed: " + s.error_message());
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

void report(const char* name, const std::string& figure, double ratio, const char* baseline, double goal) {
  std::printf("%-9s %s  ratio=%.2f vs %s (goal >= %.1f)\n", name, figure.c_str(), ratio, baseline, goal);
}

std::string format(const char* fmt, double a, double b) {
  char buf[160];
  std::snprintf(buf, sizeof buf, fmt, a, b);
  return buf;
}

void bench_transfer(int64_t params) {
  const ParameterSet update = make_update(params, 1);
  const double mb = static_cast<double>(update.total_bytes()) / 1e6;
  const Manifest manifest = build_manifest(update);
  TransportSpec transport;
  double best_up = 1e9, best_down = 1e9, best_tcp = 1e9;
  for (int i = 0; i < 3; ++i) {  // best of three: the figure of a warm machine
    best_tcp = std::min(best_tcp, tcp_copy_seconds(update));
    best_down = std::min(best_down, grpc_download_seconds(update, manifest, transport));
    best_up = std::min(best_up, grpc_upload_seconds(update, transport));
  }
  const std::string tcp = format(", loopback TCP %.0f MB/s (%.3f s)", mb / best_tcp, best_tcp);
  report("download", format("%.0f MB/s aggregator->worker, receiver verifies CRC32C + SHA-256 (%.3f s", mb / best_down, best_down) + ")" + tcp,
         best_tcp / best_down, "loopback TCP", 0.5);
  report("upload", format("%.0f MB/s worker->aggregator, sender hashes too (%.3f s", mb / best_up, best_up) + ")" + tcp,
         best_tcp / best_up, "loopback TCP", 0.5);
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

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  std::vector<std::string> cases;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--smoke") smoke = true;
    else if (a == "transfer" || a == "fedavg" || a == "robust" || a == "codec" || a == "decode" || a == "samples") cases.push_back(a);
    else {
      std::cerr << "usage: zk0-bench [--smoke] [transfer|fedavg|robust|codec|decode|samples]...\n";
      return 2;
    }
  }
  if (cases.empty()) cases = {"transfer", "fedavg", "robust", "codec", "decode", "samples"};
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
    }
  } catch (const std::exception& e) {
    std::cerr << "zk0-bench: " << e.what() << "\n";
    rc = 1;
  }
  std::filesystem::remove_all(std::filesystem::temp_directory_path() / ("zk0-bench-" + std::to_string(getpid())));
  return rc;
}
