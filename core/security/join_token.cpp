#include "core/security/join_token.h"

#include <nlohmann/json.hpp>

#include <array>

#include "core/security/hmac.h"
#include "core/security/random.h"
#include "core/util/fs.h"

namespace zk0 {

namespace {

constexpr const char* kPrefix = "zk0j1.";
// A token is pasted into a terminal: anything much longer than its claims is not one.
constexpr size_t kMaxTokenLength = 2048;
constexpr const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url(const std::string& bytes) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
  return out;
}

std::string from_base64url(const std::string& text) {
  std::array<int, 256> value;
  value.fill(-1);
  for (int i = 0; i < 64; ++i) value[static_cast<unsigned char>(kAlphabet[i])] = i;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : text) {
    if (value[c] < 0) throw JoinTokenError("malformed join token: its claims are not base64url");
    acc = (acc << 6) | static_cast<uint32_t>(value[c]);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

bool is_hex(const std::string& s, size_t length) {
  return s.size() == length && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

std::string mint_join_token(JoinToken claims, const std::string& key) {
  if (claims.nonce.empty()) claims.nonce = random_hex(16);
  const nlohmann::json j{{"run", claims.run},         {"client", claims.client}, {"exp", claims.expires_unix},
                         {"nonce", claims.nonce},     {"ca", claims.ca_sha256},  {"server", claims.server_name}};
  const std::string signed_part = kPrefix + base64url(j.dump());
  return signed_part + "." + hmac_sha256_hex(key, signed_part);
}

JoinToken read_join_token(const std::string& token) {
  if (token.size() > kMaxTokenLength) throw JoinTokenError("malformed join token: longer than any token zk0 makes");
  if (token.rfind(kPrefix, 0) != 0) throw JoinTokenError("malformed join token: it does not start with zk0j1.");
  const size_t dot = token.rfind('.');
  if (dot <= std::string(kPrefix).size() || !is_hex(token.substr(dot + 1), 64))
    throw JoinTokenError("malformed join token: it does not end with a signature (.<64 hex digits>); was it cut short?");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(from_base64url(token.substr(std::string(kPrefix).size(), dot - std::string(kPrefix).size())));
  } catch (const nlohmann::json::exception&) {
    throw JoinTokenError("malformed join token: its claims are not JSON");
  }
  JoinToken t;
  try {
    t.run = j.at("run").get<std::string>();
    t.client = j.at("client").get<std::string>();
    t.expires_unix = j.at("exp").get<int64_t>();
    t.nonce = j.at("nonce").get<std::string>();
    t.ca_sha256 = j.at("ca").get<std::string>();
    t.server_name = j.at("server").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw JoinTokenError(std::string("malformed join token: a claim is missing or of the wrong type (") + e.what() + ")");
  }
  if (t.run.empty() || t.client.empty()) throw JoinTokenError("malformed join token: it names no run or no client");
  if (!is_hex(t.ca_sha256, 64)) throw JoinTokenError("malformed join token: its CA hash is not a SHA-256");
  if (!is_hex(t.nonce, 32)) throw JoinTokenError("malformed join token: its nonce is not 16 bytes of hex");
  return t;
}

JoinToken verify_join_token(const std::string& token, const std::string& key, int64_t now_unix) {
  JoinToken t = read_join_token(token);
  const size_t dot = token.rfind('.');
  if (!constant_time_equal(hmac_sha256_hex(key, token.substr(0, dot)), token.substr(dot + 1)))
    throw JoinTokenError("join token for client '" + t.client + "' has a signature this run did not make");
  if (now_unix >= t.expires_unix)
    throw JoinTokenError("join token for client '" + t.client + "' expired " + std::to_string(now_unix - t.expires_unix) +
                         " s ago: ask the run's owner for a new one");
  return t;
}

std::string new_join_token_key() { return random_hex(32); }

std::string read_join_token_key(const std::string& path) {
  std::string key = read_file(path);
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  if (key.size() < 32) throw std::runtime_error(path + ": a join token key needs at least 32 characters");
  return key;
}

}  // namespace zk0
