#include "core/transport/channel.h"

#include "core/util/fs.h"

namespace zk0 {

namespace {
// Parameter sets are hundreds of megabytes in 4 MiB messages: large HTTP/2 frames and a deep
// flow-control window keep gRPC from cutting them into 16 KiB frames and stalling on acks.
template <typename Set>
void set_bulk_transfer_args(Set&& set) {
  set(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, (1 << 24) - 1);
  set(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 20);
}

void require_tls_files(const TlsSpec& tls) {
  if (!tls.has_files())
    throw SpecError({"spec.transport.tls: no certificate files; `mutual: true` alone asks zk0 run or the operator to issue them"});
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> make_server_credentials(const TlsSpec& tls, bool remote_clients) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  require_tls_files(tls);
  if (tls.cert_file.empty())
    throw SpecError({"spec.transport.tls: the aggregator needs certFile and keyFile (caFile alone is a client's view)"});
  // With remote clients, a connection without a certificate is let through the handshake to
  // enroll; the federation's calls refuse it (a session is bound to the certificate that opened it).
  const auto client_certificates = !tls.mutual        ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                   : remote_clients   ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                                                      : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  grpc::SslServerCredentialsOptions options(client_certificates);
  options.pem_root_certs = read_file(tls.ca_file);
  // A joining client has only a hash of the CA (its token): the CA travels with the chain for it
  // to find and check against that hash.
  std::string chain = read_file(tls.cert_file);
  if (remote_clients) chain += (chain.empty() || chain.back() == '\n' ? "" : "\n") + options.pem_root_certs;
  options.pem_key_cert_pairs.push_back({read_file(tls.key_file), chain});
  return grpc::SslServerCredentials(options);
}

std::shared_ptr<grpc::Channel> make_channel(const std::string& address, const TransportSpec& transport,
                                            const ClientTlsSpec& client) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(transport.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(transport.max_message_bytes));
  // gRPC's default reconnect backoff grows to two minutes; an aggregator that restarts or starts
  // after its workers should be found within a second or two. (The minimum backoff stays at its default: gRPC
  // also uses it as the connect timeout, and a TLS handshake needs more than a few hundred ms.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  set_bulk_transfer_args([&](const char* key, int value) { args.SetInt(key, value); });
  // A home router or proxy drops a connection idle for a minute or two: pings every 30 s while a
  // call is open (the long poll) keep it, and find a dead link in 40 s. (The aggregator accepts
  // pings every 10 s, aggregator/service.cpp.)
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10 * 1000);
  // A connection of its own, as a worker process has: gRPC otherwise shares one connection among
  // every channel of a process to the same address, and the simulation runtime's virtual clients
  // would queue their heartbeats behind each other's long polls within the aggregator's few
  // streams per connection (aggregator/service.cpp), and be dropped as silent.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (transport.tls.enabled()) {
    require_tls_files(transport.tls);
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = read_file(transport.tls.ca_file);
    if (transport.tls.mutual) {
      if (client.cert_file.empty())
        throw SpecError({"spec.clients[].tls: mutual TLS needs this client's own certFile and keyFile"});
      options.pem_private_key = read_file(client.key_file);
      options.pem_cert_chain = read_file(client.cert_file);
    }
    creds = grpc::SslCredentials(options);
    if (!transport.tls.server_name.empty()) args.SetSslTargetNameOverride(transport.tls.server_name);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  return grpc::CreateCustomChannel(address, creds, args);
}

void configure_server_limits(grpc::ServerBuilder& builder, const TransportSpec& transport) {
  set_bulk_transfer_args([&](const char* key, int value) { builder.AddChannelArgument(key, value); });
  builder.SetMaxReceiveMessageSize(static_cast<int>(transport.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(transport.max_message_bytes));
}

}  // namespace zk0
