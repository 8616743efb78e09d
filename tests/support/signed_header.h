#pragma once
// Crafted uploads in tests sign their claims as a worker does (core/ledger/ledger.h), with an
// Ed25519 key of their own: the aggregator refuses unsigned updates before reading a byte.
#include <string>

#include "core/ledger/ledger.h"
#include "core/security/signing.h"
#include "zk0/v1/federation.pb.h"

namespace zk0::test {

// Signs what `header` says (its round, base digest and metrics) for `client` of `run`, claiming
// the update whose manifest digest is `update_digest`.
inline void sign_upload_header(v1::UploadHeader& header, const std::string& run, const std::string& client,
                               const std::string& update_digest) {
  UpdateClaims claims;
  claims.run = run;
  claims.client = client;
  claims.round = static_cast<int>(header.round());
  claims.base_digest = header.base_digest();
  claims.update_digest = update_digest;
  claims.samples = header.metrics().samples();
  claims.steps = header.metrics().steps();
  claims.loss = header.metrics().loss();
  claims.policy_loss = header.metrics().policy_loss();
  const SigningKey key = SigningKey::load_or_create_ed25519("");
  header.set_claims(claims.canonical());
  header.set_claims_signature(key.sign(claims_message(header.claims())));
  header.set_signing_key(key.public_key_pem());
}

}  // namespace zk0::test
