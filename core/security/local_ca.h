#pragma once
// Certificates for `zk0 run` under `transport.tls: {mutual: true}`: a CA made for the run, a
// server certificate for the aggregator (localhost, 127.0.0.1) and one client certificate per
// client naming it (core/security/certificate.h), so that mutual TLS on one machine binds each
// worker to its own name exactly as on a cluster. ECDSA P-256, valid for 30 days.
#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace zk0 {

struct CertificateFiles {
  std::string cert_file, key_file;
};

struct RunCertificates {
  std::string ca_file;
  std::string ca_key_file;  // only when asked for: what signs the certificates of joining clients
  CertificateFiles aggregator;
  std::map<std::string, CertificateFiles> clients;
};

// Writes ca.crt, aggregator.{crt,key} and clients/<name>.{crt,key} under `dir` (keys 0600), and
// ca.key with keep_ca_key. With keep_ca_key, a CA already kept there (ca.crt and ca.key that
// belong together, valid for more than 8 more days) signs again instead of a new one, so that
// what it signed for joining clients outlives a restart.
RunCertificates issue_run_certificates(const std::string& dir, const std::string& run, const std::vector<std::string>& clients,
                                       bool keep_ca_key = false);

// A joining client's side: a new P-256 key and a certificate signing request over it (PEM).
struct KeyAndRequest {
  std::string key_pem, request_pem;
};
KeyAndRequest new_key_and_request(const std::string& common_name);

// The CA's side: a client certificate for `client` of `run` (its identity URI, clientAuth) over
// the public key of `request_pem`, valid for `validity`. The request's own signature is checked
// (its holder has the key); the names it asks for are ignored: who the certificate is for is the
// caller's decision, made from a join token. Throws std::runtime_error saying what is wrong.
std::string sign_client_request(const std::string& request_pem, const std::string& ca_cert_pem, const std::string& ca_key_pem,
                                const std::string& run, const std::string& client, std::chrono::seconds validity);

}  // namespace zk0
