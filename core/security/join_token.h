#pragma once
// Join tokens: what a run's author hands a robot owner so that the owner's machine can get a
// client certificate without anyone handing out a private key (the kubelet's TLS bootstrap and
// kubeadm's discovery token, for zk0). A token names one client of one run, expires, is accepted
// once (its nonce is recorded by the aggregator), and pins the CA that signed the aggregator's
// certificate, so that the joining machine trusts the aggregator before it has anything else.
//
//   zk0j1.<base64url of the JSON claims>.<hex HMAC-SHA256 of everything before it>
//
// The HMAC key stays with whoever mints and checks tokens (zk0 run, the aggregator); the claims
// are readable by the owner's machine, which needs the CA hash and the server name from them.
#include <cstdint>
#include <stdexcept>
#include <string>

namespace zk0 {

struct JoinToken {
  std::string run;
  std::string client;
  int64_t expires_unix = 0;
  std::string nonce;        // hex, random: what makes each token single-use
  std::string ca_sha256;    // hex SHA-256 over the DER of the CA that signed the aggregator's certificate
  std::string server_name;  // the name the aggregator's certificate carries
};

// Says what is wrong with a token, for a message the owner can act on.
class JoinTokenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A new token for `claims` (the nonce is drawn here when empty).
std::string mint_join_token(JoinToken claims, const std::string& key);

// The claims of a well-formed token, without checking its signature (the joining side cannot).
// Throws JoinTokenError naming what is malformed.
JoinToken read_join_token(const std::string& token);

// The claims of a token signed with `key` that has not expired at `now_unix`; throws
// JoinTokenError otherwise (malformed, signature, expired).
JoinToken verify_join_token(const std::string& token, const std::string& key, int64_t now_unix);

// A new HMAC key for tokens, as the hex text kept in a key file.
std::string new_join_token_key();
// The key in a key file (its text, without a trailing newline); throws naming the file when it
// is unreadable or shorter than 32 characters.
std::string read_join_token_key(const std::string& path);

}  // namespace zk0
