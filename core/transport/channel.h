#pragma once
// gRPC credentials and channels from the spec's transport section: plaintext, TLS, or mutual
// TLS with certificates read from files (the layout cert-manager writes into a Secret).
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "core/spec/federation_spec.h"

namespace zk0 {

std::shared_ptr<grpc::ServerCredentials> make_server_credentials(const TlsSpec& tls);
std::shared_ptr<grpc::Channel> make_channel(const std::string& address, const TransportSpec& transport);
// Message size limits for a server built from the spec.
void configure_server_limits(grpc::ServerBuilder& builder, const TransportSpec& transport);

}  // namespace zk0
