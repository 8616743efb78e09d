#pragma once
// Sending and receiving a parameter set as a manifest followed by chunks, the same way in both
// directions (aggregator -> worker downloads, worker -> aggregator uploads).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/codec/update_codec.h"
#include "core/tensor/hash.h"
#include "core/tensor/manifest.h"
#include "core/tensor/parameter_set.h"
#include "zk0/v1/federation.pb.h"

namespace zk0 {

// A stream that failed verification. `kind` is what the metrics count it under.
class TransferError : public std::runtime_error {
 public:
  enum class Kind { BadManifest, LayoutMismatch, ChunkChecksum, TensorHash, Incomplete, OutOfOrder };
  TransferError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }
  const char* reason() const;  // "chunk_checksum", "tensor_hash", ...

 private:
  Kind kind_;
};

void manifest_to_proto(const Manifest& manifest, v1::Manifest* out);
Manifest manifest_from_proto(const v1::Manifest& proto);

// Where a transfer stands: the first byte the receiver does not hold yet (proto's ResumePoint).
// {tensor count, 0} when everything arrived.
struct StreamPosition {
  size_t tensor = 0;
  uint64_t offset = 0;
  bool at_start() const { return tensor == 0 && offset == 0; }
  bool operator==(const StreamPosition& o) const { return tensor == o.tensor && offset == o.offset; }
};
StreamPosition position_from_proto(const v1::ResumePoint& proto);
// The bytes of `manifest` before `position`: how much of the transfer is done.
uint64_t bytes_before(const Manifest& manifest, StreamPosition position);
void position_to_proto(const StreamPosition& position, v1::ResumePoint* out);

// The CRC32C of every chunk send_parameters cuts, in order. The aggregator computes them once
// per round instead of once per download.
std::vector<uint32_t> chunk_checksums(const ParameterSet& parameters, uint64_t chunk_bytes);

// Sends `manifest` and then every tensor of `parameters` from `from` on, in chunks of at most
// `chunk_bytes`. A chunk never spans two tensors. Returns false as soon as a send fails (the
// stream broke). `checksums`, when given, must be chunk_checksums(parameters, chunk_bytes).
// Throws std::out_of_range when `from` lies beyond the parameters.
bool send_parameters(const Manifest& manifest, const ParameterSet& parameters, uint64_t chunk_bytes,
                     const std::function<bool(const v1::Manifest&)>& send_manifest,
                     const std::function<bool(v1::Chunk&)>& send_chunk,
                     const std::vector<uint32_t>* checksums = nullptr, StreamPosition from = {});

// send_parameters into a gRPC stream of Message (ParameterMessage or UploadMessage):
// `write(const Message&)` returns false when the stream broke.
template <typename Message, typename Write>
bool send_parameter_messages(const Manifest& manifest, const ParameterSet& parameters, uint64_t chunk_bytes,
                             Write&& write, const std::vector<uint32_t>* checksums = nullptr, StreamPosition from = {}) {
  Message msg;
  return send_parameters(
      manifest, parameters, chunk_bytes,
      [&](const v1::Manifest& m) {
        *msg.mutable_manifest() = m;
        return write(msg);
      },
      [&](v1::Chunk& c) {
        msg.mutable_chunk()->Swap(&c);  // hands the 4 MiB payload over without copying it
        const bool ok = write(msg);
        msg.mutable_chunk()->Swap(&c);
        return ok;
      },
      checksums, from);
}

class ParameterReceiver;

// Feeds every manifest and chunk message a gRPC reader yields into `receiver`; any other
// message is out of order.
template <typename Message, typename Reader>
void receive_parameter_messages(Reader& reader, ParameterReceiver& receiver);

// Receives one parameter set. The manifest must be self-consistent and, when `expected` is given,
// have its layout (names, dtypes, shapes) before anything is allocated, or with an active `codec`
// be that layout's encoding (check_encoded_layout), or either of the two when `plain` is Accepted
// (a download that may be the whole global or an encoded step); chunks must arrive in
// order with correct CRC32C. Each tensor's SHA-256 is computed on background threads as soon as
// its last byte arrives, so hashing overlaps the rest of the transfer; finish() waits for them
// and throws TensorHash for the first mismatch.
class ParameterReceiver {
 public:
  enum class Plain { Refused, Accepted };
  explicit ParameterReceiver(std::optional<Manifest> expected_layout, int hash_threads = 2, CodecSettings codec = {},
                             Plain plain = Plain::Refused);
  ~ParameterReceiver();
  ParameterReceiver(const ParameterReceiver&) = delete;
  ParameterReceiver& operator=(const ParameterReceiver&) = delete;

  void on_manifest(const v1::Manifest& proto);
  void on_chunk(const v1::Chunk& chunk);
  // Throws TransferError::Incomplete unless every byte of every tensor arrived and was verified.
  ParameterSet finish();

  // Resuming after the stream broke: what arrived passed its CRC32C and stays. Resumable while a
  // manifest arrived and no finished tensor failed its SHA-256 (then nothing says which chunk
  // was wrong, and only a transfer from the start helps).
  bool resumable();
  StreamPosition position() const { return {tensor_, offset_}; }
  // The next stream continues this one: it repeats the manifest, which must have the same digest,
  // and its first chunk is at position().
  void expect_continuation();

  bool has_manifest() const { return has_manifest_; }
  const Manifest& manifest() const { return manifest_; }
  uint64_t bytes_received() const { return bytes_; }

 private:
  void start_tensor();
  void verify_async(size_t index);
  void hash_worker();
  void stop_workers();

  std::optional<Manifest> expected_;
  CodecSettings codec_;
  Plain plain_;
  Manifest manifest_;
  bool has_manifest_ = false;
  bool continuation_ = false;
  ParameterSet parameters_;
  size_t tensor_ = 0;
  uint64_t offset_ = 0;
  uint64_t bytes_ = 0;

  int hash_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_ready_, work_done_;
  std::deque<size_t> queue_;
  size_t pending_ = 0;
  bool stopping_ = false;
  std::string hash_error_;
};

template <typename Message, typename Reader>
void receive_parameter_messages(Reader& reader, ParameterReceiver& receiver) {
  Message msg;
  while (reader.Read(&msg)) {
    if (msg.has_manifest()) receiver.on_manifest(msg.manifest());
    else if (msg.has_chunk()) receiver.on_chunk(msg.chunk());
    else throw TransferError(TransferError::Kind::OutOfOrder, "a message other than manifest or chunk arrived mid-stream");
  }
}

}  // namespace zk0
