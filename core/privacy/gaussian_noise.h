#pragma once
// Gaussian noise for differential privacy, from a cryptographically secure generator: the
// keystream of AES-256 in counter mode, keyed from the operating system's CSPRNG (OpenSSL's
// RAND_bytes) in production, or from a seed where a test asks for reproducible noise. Counter
// mode makes every coordinate's draw a function of (key, stream, tensor, index), so the noise is
// filled on all cores and is the same whatever the thread count. Each pair of coordinates takes
// one 16-byte block: two 64-bit uniforms with 53 bits each, turned into two normals by Box-Muller,
// whose tails reach about 8.5 standard deviations (32-bit uniforms would stop at 6.7).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace zk0 {

class GaussianNoise {
 public:
  // A fresh key from the operating system's CSPRNG; throws if it fails.
  static GaussianNoise from_os();
  // A key derived from `seed` (SHA-256): reproducible noise, for tests only.
  static GaussianNoise from_seed(uint64_t seed);

  // x[i] += stddev * N(0, 1) for i in [0, n), the draws of (stream, tensor).
  void add(float* x, size_t n, double stddev, uint64_t stream, uint32_t tensor, int threads) const;
  // One draw, as add() would make it for coordinate `index`: for the statistical tests.
  double draw(uint64_t stream, uint32_t tensor, uint64_t index) const;
  // A uniform in [0, 1) with 53 bits, the index-th of (stream, tensor): Poisson sampling's coins.
  double uniform(uint64_t stream, uint32_t tensor, uint64_t index) const;
  // out[i] = uniform(stream, tensor, i) for i in [0, n), in one pass of the keystream.
  void uniforms(double* out, size_t n, uint64_t stream, uint32_t tensor) const;

 private:
  explicit GaussianNoise(const std::array<unsigned char, 32>& key) : key_(key) {}
  // 16 bytes of keystream per block, from block `first`.
  void keystream(unsigned char* out, uint64_t stream, uint32_t tensor, uint64_t first, size_t blocks) const;
  void fill_pairs(double* out, uint64_t stream, uint32_t tensor, uint64_t first_pair, size_t pairs) const;
  std::array<unsigned char, 32> key_;
};

}  // namespace zk0
