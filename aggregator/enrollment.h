#pragma once
// How remote clients get their certificates (proto Enrollment, core/security/join_token.h).
// Join: a valid, unexpired, unused join token for a remote client of this run, plus a signing
// request over a key the client made, buys a client certificate bound to the token's client name
// and signed by the run's CA, and the run's spec as that client needs it. The token's nonce is
// recorded durably before the reply, so a token works once, across aggregator restarts too.
// Renew: a client that presents its current certificate gets a new one for the same name.
#include <grpcpp/grpcpp.h>

#include <mutex>
#include <string>

#include "core/spec/federation_spec.h"
#include "zk0/v1/federation.grpc.pb.h"

namespace zk0 {

class EnrollmentService final : public v1::Enrollment::Service {
 public:
  // Reads the CA's certificate (transport.tls.caFile) and key and the token key
  // (transport.join); accepted tokens are recorded under <outputDir>/join/used.
  explicit EnrollmentService(const FederationSpec& spec);

  grpc::Status Join(grpc::ServerContext* ctx, const v1::JoinRequest* req, v1::JoinReply* reply) override;
  grpc::Status Renew(grpc::ServerContext* ctx, const v1::RenewRequest* req, v1::JoinReply* reply) override;

 private:
  bool is_remote(const std::string& client) const;
  // Signs and fills the reply; throws std::runtime_error on a bad request.
  void issue(const std::string& client, const std::string& request_pem, v1::JoinReply* reply) const;

  const FederationSpec& spec_;
  std::string ca_pem_, ca_key_pem_, token_key_;
  std::string used_dir_;
  std::mutex mu_;  // one token's check-and-record at a time
};

}  // namespace zk0
