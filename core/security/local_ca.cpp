#include "core/security/local_ca.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <stdexcept>

#include "core/security/certificate.h"
#include "core/util/fs.h"

namespace zk0 {

namespace {

namespace fs = std::filesystem;
using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("issuing certificates: ") + what + " failed");
}

Key new_key() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  check(key != nullptr, "EC key generation");
  return Key(key, EVP_PKEY_free);
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  check(ext != nullptr, "a certificate extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// Signed by (issuer, issuer_key), or self-signed when issuer is null.
Cert make_certificate(const std::string& common_name, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, long serial,
                      const std::vector<std::pair<int, std::string>>& extensions) {
  Cert cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30L * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("zk0"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  for (const auto& [nid, value] : extensions) add_extension(cert.get(), issuer ? issuer : cert.get(), nid, value);
  check(X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0, "signing");
  return cert;
}

std::string pem_of(X509* cert) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string pem_of(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

CertificateFiles write_pair(const fs::path& base, X509* cert, EVP_PKEY* key) {
  CertificateFiles f{base.string() + ".crt", base.string() + ".key"};
  write_file_atomic(f.cert_file, pem_of(cert));
  write_file_atomic(f.key_file, pem_of(key));
  chmod(f.key_file.c_str(), 0600);
  return f;
}

}  // namespace

RunCertificates issue_run_certificates(const std::string& dir, const std::string& run, const std::vector<std::string>& clients) {
  fs::create_directories(fs::path(dir) / "clients");
  chmod(dir.c_str(), 0700);
  RunCertificates out;
  const Key ca_key = new_key();
  const Cert ca = make_certificate("zk0 run " + run + " CA", ca_key.get(), nullptr, nullptr, 1,
                                   {{NID_basic_constraints, "critical,CA:TRUE"}, {NID_key_usage, "critical,keyCertSign,cRLSign"}});
  out.ca_file = (fs::path(dir) / "ca.crt").string();
  write_file_atomic(out.ca_file, pem_of(ca.get()));
  long serial = 2;
  const Key server_key = new_key();
  const Cert server = make_certificate("aggregator", server_key.get(), ca.get(), ca_key.get(), serial++,
                                       {{NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"},
                                        {NID_key_usage, "critical,digitalSignature"},
                                        {NID_ext_key_usage, "serverAuth"}});
  out.aggregator = write_pair(fs::path(dir) / "aggregator", server.get(), server_key.get());
  for (const auto& client : clients) {
    const Key key = new_key();
    const Cert cert = make_certificate(client, key.get(), ca.get(), ca_key.get(), serial++,
                                       {{NID_subject_alt_name, "URI:" + client_identity_uri(run, client)},
                                        {NID_key_usage, "critical,digitalSignature"},
                                        {NID_ext_key_usage, "clientAuth"}});
    out.clients[client] = write_pair(fs::path(dir) / "clients" / client, cert.get(), key.get());
  }
  return out;
}

}  // namespace zk0
