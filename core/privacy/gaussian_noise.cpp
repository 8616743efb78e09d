#include "core/privacy/gaussian_noise.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/aggregation/parallel.h"

namespace zk0 {

namespace {

constexpr size_t kPairsPerBatch = 4096;

void put_be64(unsigned char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<unsigned char>(v & 0xff);
}

}  // namespace

GaussianNoise GaussianNoise::from_os() {
  std::array<unsigned char, 32> key{};
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1)
    throw std::runtime_error("privacy: the operating system's random generator failed (RAND_bytes)");
  return GaussianNoise(key);
}

GaussianNoise GaussianNoise::from_seed(uint64_t seed) {
  unsigned char in[24] = {'z', 'k', '0', '-', 'd', 'p', '-', 'n', 'o', 'i', 's', 'e', '-', 'k', 'e', 'y'};
  put_be64(in + 16, seed);
  std::array<unsigned char, 32> key{};
  SHA256(in, sizeof in, key.data());
  return GaussianNoise(key);
}

void GaussianNoise::keystream(unsigned char* out, uint64_t stream, uint32_t tensor, uint64_t first, size_t blocks) const {
  // The counter block: (stream, tensor) in the high half, the block index in the low half.
  unsigned char iv[16];
  put_be64(iv, stream * 0x100000000ull + tensor);
  put_be64(iv + 8, first);
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ctr(), nullptr, key_.data(), iv) != 1)
    throw std::runtime_error("privacy: AES-256-CTR is not available from OpenSSL");
  static const std::vector<unsigned char> zeros(kPairsPerBatch * 16, 0);
  for (size_t done = 0; done < blocks;) {
    const size_t now = std::min(kPairsPerBatch, blocks - done);
    int len = 0;
    if (EVP_EncryptUpdate(ctx.get(), out + done * 16, &len, zeros.data(), static_cast<int>(now * 16)) != 1)
      throw std::runtime_error("privacy: AES-256-CTR failed");
    done += now;
  }
}

void GaussianNoise::fill_pairs(double* out, uint64_t stream, uint32_t tensor, uint64_t first_pair, size_t pairs) const {
  std::vector<unsigned char> bytes(pairs * 16);
  keystream(bytes.data(), stream, tensor, first_pair, pairs);
  for (size_t p = 0; p < pairs; ++p) {
    uint64_t a, b;
    std::memcpy(&a, &bytes[p * 16], 8);
    std::memcpy(&b, &bytes[p * 16 + 8], 8);
    const double u1 = (static_cast<double>(a >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]: the log stays finite
    const double u2 = static_cast<double>(b >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    out[2 * p] = r * std::cos(2 * M_PI * u2);
    out[2 * p + 1] = r * std::sin(2 * M_PI * u2);
  }
}

void GaussianNoise::add(float* x, size_t n, double stddev, uint64_t stream, uint32_t tensor, int threads) const {
  const size_t pairs = (n + 1) / 2;
  parallel_for(pairs, threads, [&](size_t begin, size_t end) {
    std::vector<double> normals(2 * kPairsPerBatch);
    for (size_t p = begin; p < end; p += kPairsPerBatch) {
      const size_t now = std::min(kPairsPerBatch, end - p);
      fill_pairs(normals.data(), stream, tensor, p, now);
      const size_t first = 2 * p, last = std::min(n, 2 * (p + now));
      for (size_t i = first; i < last; ++i) x[i] = static_cast<float>(x[i] + stddev * normals[i - first]);
    }
  });
}

double GaussianNoise::uniform(uint64_t stream, uint32_t tensor, uint64_t index) const {
  unsigned char block[16];
  keystream(block, stream, tensor, index, 1);
  uint64_t a;
  std::memcpy(&a, block, 8);
  return static_cast<double>(a >> 11) * 0x1.0p-53;
}

void GaussianNoise::uniforms(double* out, size_t n, uint64_t stream, uint32_t tensor) const {
  std::vector<unsigned char> bytes(n * 16);
  keystream(bytes.data(), stream, tensor, 0, n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t a;
    std::memcpy(&a, &bytes[i * 16], 8);
    out[i] = static_cast<double>(a >> 11) * 0x1.0p-53;
  }
}

double GaussianNoise::draw(uint64_t stream, uint32_t tensor, uint64_t index) const {
  double pair[2];
  fill_pairs(pair, stream, tensor, index / 2, 1);
  return pair[index % 2];
}

}  // namespace zk0
