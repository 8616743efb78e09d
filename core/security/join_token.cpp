#include "core/security/join_token.h"

#include <nlohmann/json.hpp>

#include "core/security/hmac.h"
#include "core/security/random.h"
#include "core/util/base64.h"
#include "core/util/fs.h"

namespace zk0 {

namespace {

constexpr const char* kPrefix = "zk0j1.";
// A token is pasted into a terminal: anything much longer than its claims is not one.
constexpr size_t kMaxTokenLength = 2048;
bool is_hex(const std::string& s, size_t length) {
  return s.size() == length && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

std::string mint_join_token(JoinToken claims, const std::string& key) {
  if (claims.nonce.empty()) claims.nonce = random_hex(16);
  const nlohmann::json j{{"run", claims.run},         {"client", claims.client}, {"exp", claims.expires_unix},
                         {"nonce", claims.nonce},     {"ca", claims.ca_sha256},  {"server", claims.server_name}};
  const std::string signed_part = kPrefix + base64_encode(j.dump(), Base64::kUrl);
  return signed_part + "." + hmac_sha256_hex(key, signed_part);
}

JoinToken read_join_token(const std::string& token) {
  if (token.size() > kMaxTokenLength) throw JoinTokenError("malformed join token: longer than any token zk0 makes");
  if (token.rfind(kPrefix, 0) != 0) throw JoinTokenError("malformed join token: it does not start with zk0j1.");
  const size_t dot = token.rfind('.');
  if (dot <= std::string(kPrefix).size() || !is_hex(token.substr(dot + 1), 64))
    throw JoinTokenError("malformed join token: it does not end with a signature (.<64 hex digits>); was it cut short?");
  std::string claims;
  try {
    claims = base64_decode(token.substr(std::string(kPrefix).size(), dot - std::string(kPrefix).size()), Base64::kUrl);
  } catch (const std::invalid_argument&) {
    throw JoinTokenError("malformed join token: its claims are not base64url");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(claims);
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
