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

std::shared_ptr<grpc::ServerCredentials> make_server_credentials(const TlsSpec& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  require_tls_files(tls);
  grpc::SslServerCredentialsOptions options(tls.mutual ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                                       : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_root_certs = read_file(tls.ca_file);
  options.pem_key_cert_pairs.push_back({read_file(tls.key_file), read_file(tls.cert_file)});
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
