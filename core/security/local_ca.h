#pragma once
// Certificates for `zk0 run` under `transport.tls: {mutual: true}`: a CA made for the run, a
// server certificate for the aggregator (localhost, 127.0.0.1) and one client certificate per
// client naming it (core/security/certificate.h), so that mutual TLS on one machine binds each
// worker to its own name exactly as on a cluster. ECDSA P-256, valid for 30 days.
#include <map>
#include <string>
#include <vector>

namespace zk0 {

struct CertificateFiles {
  std::string cert_file, key_file;
};

struct RunCertificates {
  std::string ca_file;
  CertificateFiles aggregator;
  std::map<std::string, CertificateFiles> clients;
};

// Writes ca.crt, aggregator.{crt,key} and clients/<name>.{crt,key} under `dir` (keys 0600).
RunCertificates issue_run_certificates(const std::string& dir, const std::string& run, const std::vector<std::string>& clients);

}  // namespace zk0
