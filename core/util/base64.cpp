#include "core/util/base64.h"

#include <array>
#include <cstdint>

namespace zk0 {

namespace {

const char* alphabet_of(Base64 alphabet) {
  return alphabet == Base64::kStandard ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                                       : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
}

}  // namespace

std::string base64_encode(const std::string& bytes, Base64 alphabet) {
  const char* chars = alphabet_of(alphabet);
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += chars[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += chars[(acc << (6 - bits)) & 63];
  if (alphabet == Base64::kStandard)
    while (out.size() % 4) out += '=';
  return out;
}

std::string base64_decode(const std::string& text, Base64 alphabet) {
  std::array<int, 256> value;
  value.fill(-1);
  const char* chars = alphabet_of(alphabet);
  for (int i = 0; i < 64; ++i) value[static_cast<unsigned char>(chars[i])] = i;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : text) {
    if (c == '=' || c == '\n' || c == '\r') continue;
    if (value[c] < 0) throw std::invalid_argument("not base64: character " + std::to_string(static_cast<int>(c)));
    acc = (acc << 6) | static_cast<uint32_t>(value[c]);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

}  // namespace zk0
