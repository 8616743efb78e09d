#pragma once
// Trust on a join token: before a joining machine has anything but a token, it learns the run's
// CA from the aggregator's own TLS handshake and keeps it only if its SHA-256 is the one the
// token pins and the aggregator's certificate chains to it under the token's server name
// (kubeadm's discovery-token-ca-cert-hash, for zk0). The aggregator sends the CA in its chain
// when a run has remote clients (core/transport/channel.h).
#include <chrono>
#include <string>

namespace zk0 {

// The CA's PEM. Throws std::runtime_error saying what failed: the endpoint does not answer
// within `timeout`, speaks no TLS, presents no CA with that hash, or a certificate that does not
// chain to it or name `server_name`.
std::string fetch_pinned_ca(const std::string& endpoint, const std::string& ca_sha256, const std::string& server_name,
                            std::chrono::milliseconds timeout);

}  // namespace zk0
