#include "core/tensor/hash.h"

#include <openssl/evp.h>

#include <cstring>
#include <stdexcept>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace zk0 {

struct Sha256::State {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  if (!state_->ctx || EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("sha256: OpenSSL initialisation failed");
}

Sha256::~Sha256() { EVP_MD_CTX_free(state_->ctx); }

void Sha256::update(const void* data, size_t size) {
  if (size && EVP_DigestUpdate(state_->ctx, data, size) != 1)
    throw std::runtime_error("sha256: update failed");
}

Sha256Digest Sha256::finish() {
  Sha256Digest out{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(state_->ctx, out.data(), &len) != 1 || len != out.size())
    throw std::runtime_error("sha256: final failed");
  return out;
}

Sha256Digest sha256(const void* data, size_t size) {
  Sha256 h;
  h.update(data, size);
  return h.finish();
}

std::string to_hex(const uint8_t* data, size_t size) {
  static const char* digits = "0123456789abcdef";
  std::string s(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    s[2 * i] = digits[data[i] >> 4];
    s[2 * i + 1] = digits[data[i] & 15];
  }
  return s;
}

std::string to_hex(const Sha256Digest& digest) { return to_hex(digest.data(), digest.size()); }

namespace {

// Three lanes of the crc32 instruction run in parallel (its latency is three cycles, its
// throughput one per cycle), their CRCs joined by multiplying by x^(8·lane bytes) in GF(2) with
// tables for the two fixed lane lengths (Mark Adler's method, crc32c.c, 2013). `dst`, when given,
// receives a copy of the bytes in the same pass.
constexpr uint32_t kCrc32cPoly = 0x82F63B78u;  // reflected
constexpr size_t kLongLane = 8192, kShortLane = 256;

uint32_t gf2_matrix_times(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (; vec; vec >>= 1, ++mat)
    if (vec & 1) sum ^= *mat;
  return sum;
}

void gf2_matrix_square(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; ++n) square[n] = gf2_matrix_times(mat, mat[n]);
}

// The operator appending `len` zero bytes (a power of two) to a CRC, as four byte tables.
struct ZerosTable {
  uint32_t t[4][256];
  explicit ZerosTable(size_t len) {
    uint32_t even[32], odd[32];
    odd[0] = kCrc32cPoly;  // one zero bit
    for (int n = 1; n < 32; ++n) odd[n] = 1u << (n - 1);
    gf2_matrix_square(even, odd);  // two zero bits
    gf2_matrix_square(odd, even);  // four
    const uint32_t* op = nullptr;
    for (;;) {  // eight zero bits (one byte) in even, then doubling until len is used up
      gf2_matrix_square(even, odd);
      len >>= 1;
      if (len == 0) {
        op = even;
        break;
      }
      gf2_matrix_square(odd, even);
      len >>= 1;
      if (len == 0) {
        op = odd;
        break;
      }
    }
    for (uint32_t n = 0; n < 256; ++n)
      for (int b = 0; b < 4; ++b) t[b][n] = gf2_matrix_times(op, n << (8 * b));
  }
  uint32_t shift(uint32_t crc) const {
    return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
  }
};

uint32_t crc32c_portable(const uint8_t* p, size_t n, uint32_t crc, uint8_t* dst) {
  if (dst) std::memcpy(dst, p, n);
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (kCrc32cPoly & (0u - (crc & 1u)));
  }
  return crc;
}

#if defined(__x86_64__)
template <bool kCopy>
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const uint8_t* p, size_t n, uint32_t crc, uint8_t* dst) {
  static const ZerosTable long_shift(kLongLane), short_shift(kShortLane);
  uint64_t c0 = crc;
  for (const size_t lane : {kLongLane, kShortLane}) {
    const ZerosTable& shift = lane == kLongLane ? long_shift : short_shift;
    while (n >= 3 * lane) {
      uint64_t c1 = 0, c2 = 0;
      for (size_t i = 0; i < lane; i += 8) {
        uint64_t v0, v1, v2;
        std::memcpy(&v0, p + i, 8);
        std::memcpy(&v1, p + lane + i, 8);
        std::memcpy(&v2, p + 2 * lane + i, 8);
        c0 = _mm_crc32_u64(c0, v0);
        c1 = _mm_crc32_u64(c1, v1);
        c2 = _mm_crc32_u64(c2, v2);
        if (kCopy) {
          std::memcpy(dst + i, &v0, 8);
          std::memcpy(dst + lane + i, &v1, 8);
          std::memcpy(dst + 2 * lane + i, &v2, 8);
        }
      }
      c0 = shift.shift(static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
      c0 = shift.shift(static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c2);
      p += 3 * lane;
      if (kCopy) dst += 3 * lane;
      n -= 3 * lane;
    }
  }
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c0 = _mm_crc32_u64(c0, v);
    if (kCopy) std::memcpy(dst, &v, 8);
    p += 8;
    if (kCopy) dst += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c0);
  while (n--) {
    if (kCopy) *dst++ = *p;
    c32 = _mm_crc32_u8(c32, *p++);
  }
  return c32;
}
#endif

uint32_t crc32c_any(const void* data, size_t size, uint32_t crc, void* dst) {
  const auto* p = static_cast<const uint8_t*>(data);
  auto* d = static_cast<uint8_t*>(dst);
  crc = ~crc;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) return ~(d ? crc32c_sse42<true>(p, size, crc, d) : crc32c_sse42<false>(p, size, crc, nullptr));
#endif
  return ~crc32c_portable(p, size, crc, d);
}

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) { return crc32c_any(data, size, crc, nullptr); }

uint32_t crc32c_copy(void* dst, const void* src, size_t size, uint32_t crc) { return crc32c_any(src, size, crc, dst); }

}  // namespace zk0
