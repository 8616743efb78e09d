#pragma once
// What a verified X.509 certificate says about its holder: the identity a client registers
// under (a URI SAN spiffe://zk0.io/run/<run>/client/<client>), the SHA-256 fingerprint and the
// subject. The TLS handshake has already checked the chain against the run's CA; this only reads.
#include <optional>
#include <string>
#include <vector>

namespace zk0 {

struct CertificateInfo {
  std::string fingerprint_sha256;  // hex, over the DER encoding
  std::string subject;             // RFC 2253, e.g. CN=c0,O=zk0
  std::vector<std::string> uri_sans, dns_sans;
};

// Throws std::runtime_error when `pem` holds no certificate.
CertificateInfo parse_certificate(const std::string& pem);

// The URI SAN that names client `client` of run `run`.
std::string client_identity_uri(const std::string& run, const std::string& client);

// The client name a certificate is issued to for `run`: the one client identity URI it carries,
// or nullopt when it carries none for this run.
std::optional<std::string> client_named_by(const CertificateInfo& certificate, const std::string& run);

}  // namespace zk0
