#pragma once
// gRPC credentials and channels from the spec's transport section: plaintext, TLS, or mutual
// TLS with certificates read from files (the layout cert-manager writes into a Secret).
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "core/spec/federation_spec.h"

namespace zk0 {

// Throws SpecError when the TLS settings name no files (`mutual: true` alone is for the runtimes,
// which issue the certificates and pass files on).
// With remote_clients, mutual TLS asks for a client certificate without requiring one (for
// Enrollment) and the served chain carries the CA.
std::shared_ptr<grpc::ServerCredentials> make_server_credentials(const TlsSpec& tls, bool remote_clients = false);
// A worker's channel: it verifies the aggregator with transport.tls.caFile and, under mutual TLS,
// presents `client`'s own certificate.
std::shared_ptr<grpc::Channel> make_channel(const std::string& address, const TransportSpec& transport,
                                            const ClientTlsSpec& client = {});
// Message size limits for a server built from the spec.
void configure_server_limits(grpc::ServerBuilder& builder, const TransportSpec& transport);

}  // namespace zk0
