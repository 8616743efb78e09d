#pragma once
// SHA-256 (OpenSSL; SHA-NI where the CPU has it) for tensors and manifests, CRC32C for chunks.
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace zk0 {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t size);
  Sha256Digest finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

Sha256Digest sha256(const void* data, size_t size);
std::string to_hex(const uint8_t* data, size_t size);
std::string to_hex(const Sha256Digest& digest);

// CRC32C (Castagnoli). Chunks carry it so that a corrupted chunk is caught the moment it
// arrives, at memory speed; the SHA-256 per tensor is the end-to-end guarantee.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
// crc32c of `src`, copying it to `dst` in the same pass (a receiver's chunk into its tensor).
uint32_t crc32c_copy(void* dst, const void* src, size_t size, uint32_t crc = 0);

}  // namespace zk0
