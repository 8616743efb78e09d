#pragma once
// Sending and receiving a parameter set as a manifest followed by chunks, the same way in both
// directions (aggregator -> worker downloads, worker -> aggregator uploads).
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

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

// Sends `manifest` and then every tensor of `parameters` in chunks of at most `chunk_bytes`.
// A chunk never spans two tensors. Returns false as soon as a send fails (the stream broke).
bool send_parameters(const Manifest& manifest, const ParameterSet& parameters, uint64_t chunk_bytes,
                     const std::function<bool(const v1::Manifest&)>& send_manifest,
                     const std::function<bool(v1::Chunk&)>& send_chunk);

// Receives one parameter set. The manifest must be self-consistent and, when `expected` is given,
// have its layout (names, dtypes, shapes) before anything is allocated; chunks must arrive in
// order with correct CRC32C; every tensor's SHA-256 is checked as its last byte arrives.
class ParameterReceiver {
 public:
  explicit ParameterReceiver(std::optional<Manifest> expected_layout) : expected_(std::move(expected_layout)) {}

  void on_manifest(const v1::Manifest& proto);
  void on_chunk(const v1::Chunk& chunk);
  // Throws TransferError::Incomplete unless every byte of every tensor arrived and was verified.
  ParameterSet finish();

  const Manifest& manifest() const { return manifest_; }
  bool has_manifest() const { return has_manifest_; }
  uint64_t bytes_received() const { return bytes_; }

 private:
  void start_tensor();
  std::optional<Manifest> expected_;
  Manifest manifest_;
  bool has_manifest_ = false;
  ParameterSet parameters_;
  size_t tensor_ = 0;
  uint64_t offset_ = 0;
  uint64_t bytes_ = 0;
  std::unique_ptr<Sha256> hash_;
};

}  // namespace zk0
