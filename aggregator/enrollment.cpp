#include "aggregator/enrollment.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/security/certificate.h"
#include "core/security/join_token.h"
#include "core/security/local_ca.h"
#include "core/util/fs.h"
#include "core/util/log.h"

namespace zk0 {

namespace {

namespace fs = std::filesystem;
constexpr size_t kMaxRequestBytes = 16 << 10;  // a CSR is under 1 KiB; a token under 2 KiB

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

grpc::Status refuse(grpc::StatusCode code, const std::string& client, const std::string& reason, const std::string& message) {
  log_warn("join_refused", {kv("client", client), kv("reason", reason), kv("error", message)});
  return {code, message};
}

}  // namespace

EnrollmentService::EnrollmentService(const FederationSpec& spec)
    : spec_(spec),
      ca_pem_(read_file(spec.transport.tls.ca_file)),
      ca_key_pem_(read_file(spec.transport.join.ca_key_file)),
      token_key_(read_join_token_key(spec.transport.join.token_key_file)),
      used_dir_((fs::path(spec.output_dir) / "join" / "used").string()) {
  fs::create_directories(used_dir_);
}

bool EnrollmentService::is_remote(const std::string& client) const {
  return std::any_of(spec_.clients.begin(), spec_.clients.end(), [&](const ClientSpec& c) { return c.name == client && c.remote; });
}

void EnrollmentService::issue(const std::string& client, const std::string& request_pem, v1::JoinReply* reply) const {
  reply->set_client_name(client);
  reply->set_certificate(sign_client_request(request_pem, ca_pem_, ca_key_pem_, spec_.name, client,
                                             std::chrono::seconds(spec_.transport.join.certificate_ttl_seconds)));
  reply->set_ca_certificate(ca_pem_);
  reply->set_spec(to_yaml(client_view(spec_, client)));
}

grpc::Status EnrollmentService::Join(grpc::ServerContext*, const v1::JoinRequest* req, v1::JoinReply* reply) {
  if (req->token().size() + req->certificate_request().size() > kMaxRequestBytes)
    return refuse(grpc::StatusCode::INVALID_ARGUMENT, "", "oversized", "join request is larger than any token and CSR");
  JoinToken token;
  try {
    token = verify_join_token(req->token(), token_key_, now_unix());
  } catch (const JoinTokenError& e) {
    return refuse(grpc::StatusCode::UNAUTHENTICATED, "", "token", e.what());
  }
  if (token.run != spec_.name)
    return refuse(grpc::StatusCode::PERMISSION_DENIED, token.client, "other_run",
                  "join token is for run '" + token.run + "', this aggregator serves run '" + spec_.name + "'");
  if (!is_remote(token.client))
    return refuse(grpc::StatusCode::PERMISSION_DENIED, token.client, "not_remote",
                  "client '" + token.client + "' is not a remote client of run '" + spec_.name + "'");
  std::lock_guard<std::mutex> lock(mu_);
  const fs::path used = fs::path(used_dir_) / token.nonce;
  if (fs::exists(used)) {
    std::string when = "before";
    try {
      const int64_t at = nlohmann::json::parse(read_file(used.string())).at("joinedAtUnix").get<int64_t>();
      when = std::to_string(now_unix() - at) + " s ago";
    } catch (const std::exception&) {
    }
    return refuse(grpc::StatusCode::PERMISSION_DENIED, token.client, "token_used",
                  "join token for client '" + token.client + "' was already used " + when +
                      ": a token works once; ask the run's owner for a new one");
  }
  try {
    issue(token.client, req->certificate_request(), reply);
  } catch (const std::exception& e) {
    return refuse(grpc::StatusCode::INVALID_ARGUMENT, token.client, "request", e.what());
  }
  const CertificateInfo issued = parse_certificate(reply->certificate());
  // Recorded before the reply leaves: a crash after this loses a certificate, never the token's
  // single use.
  write_file_atomic(used.string(), nlohmann::json{{"client", token.client},
                                                  {"joinedAtUnix", now_unix()},
                                                  {"certificateSha256", issued.fingerprint_sha256}}
                                        .dump() +
                                       "\n");
  fsync_directory(used_dir_);
  log_info("client_joined", {kv("client", token.client), kv("certificate", issued.fingerprint_sha256.substr(0, 16)),
                             kv("expires_in_s", spec_.transport.join.certificate_ttl_seconds)});
  return grpc::Status::OK;
}

grpc::Status EnrollmentService::Renew(grpc::ServerContext* ctx, const v1::RenewRequest* req, v1::JoinReply* reply) {
  if (req->certificate_request().size() > kMaxRequestBytes)
    return refuse(grpc::StatusCode::INVALID_ARGUMENT, "", "oversized", "renew request is larger than any CSR");
  // The TLS handshake verified any certificate the connection carries against the run's CA.
  const auto auth = ctx->auth_context();
  const auto pem = auth ? auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME) : std::vector<grpc::string_ref>{};
  if (pem.empty())
    return refuse(grpc::StatusCode::UNAUTHENTICATED, "", "no_certificate", "renewing needs the current client certificate");
  std::optional<std::string> client;
  try {
    client = client_named_by(parse_certificate(std::string(pem.front().data(), pem.front().size())), spec_.name);
  } catch (const std::exception&) {
  }
  if (!client || !is_remote(*client))
    return refuse(grpc::StatusCode::PERMISSION_DENIED, client.value_or(""), "not_remote",
                  "the certificate names no remote client of run '" + spec_.name + "'");
  try {
    issue(*client, req->certificate_request(), reply);
  } catch (const std::exception& e) {
    return refuse(grpc::StatusCode::INVALID_ARGUMENT, *client, "request", e.what());
  }
  log_info("client_renewed", {kv("client", *client)});
  return grpc::Status::OK;
}

}  // namespace zk0
