#include "core/security/local_ca.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <ctime>
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

constexpr long kRunCertificateSeconds = 30L * 24 * 3600;

// Signed by (issuer, issuer_key), or self-signed when issuer is null. The serial is random (a CA
// that signs for joining clients over weeks keeps no counter).
Cert make_certificate(const std::string& common_name, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, long validity_seconds,
                      const std::vector<std::pair<int, std::string>>& extensions) {
  Cert cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(BN_new(), BN_free);
  check(serial && BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1, "a random serial");
  check(BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) != nullptr, "a random serial");
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), validity_seconds);
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

// A certificate and a private key from PEM text; null when the text holds none.
Cert certificate_from_pem(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  return Cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
}

Key key_from_pem(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  return Key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
}

std::vector<std::pair<int, std::string>> client_extensions(const std::string& run, const std::string& client) {
  return {{NID_subject_alt_name, "URI:" + client_identity_uri(run, client)},
          {NID_key_usage, "critical,digitalSignature"},
          {NID_ext_key_usage, "clientAuth"}};
}

}  // namespace

KeyAndRequest new_key_and_request(const std::string& common_name) {
  const Key key = new_key();
  std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)> request(X509_REQ_new(), X509_REQ_free);
  X509_REQ_set_version(request.get(), 0);
  X509_NAME* name = X509_REQ_get_subject_name(request.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509_REQ_set_pubkey(request.get(), key.get());
  check(X509_REQ_sign(request.get(), key.get(), EVP_sha256()) > 0, "signing the request");
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_X509_REQ(bio.get(), request.get());
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return {pem_of(key.get()), std::string(data, static_cast<size_t>(n))};
}

std::string sign_client_request(const std::string& request_pem, const std::string& ca_cert_pem, const std::string& ca_key_pem,
                                const std::string& run, const std::string& client, std::chrono::seconds validity) {
  std::unique_ptr<BIO, decltype(&BIO_free)> rbio(BIO_new_mem_buf(request_pem.data(), static_cast<int>(request_pem.size())), BIO_free);
  std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)> request(PEM_read_bio_X509_REQ(rbio.get(), nullptr, nullptr, nullptr),
                                                             X509_REQ_free);
  if (!request) throw std::runtime_error("the certificate signing request is not a PEM CERTIFICATE REQUEST");
  const Key public_key(X509_REQ_get_pubkey(request.get()), EVP_PKEY_free);
  if (!public_key) throw std::runtime_error("the certificate signing request carries no public key");
  if (X509_REQ_verify(request.get(), public_key.get()) != 1)
    throw std::runtime_error("the certificate signing request's signature does not verify: its sender does not hold the key");
  const int bits = EVP_PKEY_get_bits(public_key.get());
  const int type = EVP_PKEY_get_base_id(public_key.get());
  if (!((type == EVP_PKEY_EC && bits >= 256) || (type == EVP_PKEY_RSA && bits >= 2048) || type == EVP_PKEY_ED25519))
    throw std::runtime_error("the certificate signing request's key is too weak (" + std::to_string(bits) +
                             " bits): use P-256 or stronger, RSA 2048 or Ed25519");
  const Cert ca = certificate_from_pem(ca_cert_pem);
  if (!ca) throw std::runtime_error("the CA certificate is not PEM");
  const Key ca_key = key_from_pem(ca_key_pem);
  if (!ca_key) throw std::runtime_error("the CA key is not a PEM private key");
  if (X509_check_private_key(ca.get(), ca_key.get()) != 1) throw std::runtime_error("the CA key does not belong to the CA certificate");
  const Cert cert = make_certificate(client, public_key.get(), ca.get(), ca_key.get(), static_cast<long>(validity.count()),
                                     client_extensions(run, client));
  return pem_of(cert.get());
}

namespace {
// The CA a kept ca.crt and ca.key hold, when they belong together and the CA has more than a
// remote client certificate's default life (7 days) left; null otherwise.
std::pair<Cert, Key> kept_ca(const fs::path& dir) {
  std::pair<Cert, Key> none{Cert(nullptr, X509_free), Key(nullptr, EVP_PKEY_free)};
  std::string cert_pem, key_pem;
  try {
    cert_pem = read_file((dir / "ca.crt").string());
    key_pem = read_file((dir / "ca.key").string());
  } catch (const std::exception&) {
    return none;
  }
  Cert ca = certificate_from_pem(cert_pem);
  Key key = key_from_pem(key_pem);
  if (!ca || !key || X509_check_private_key(ca.get(), key.get()) != 1) return none;
  const time_t horizon = time(nullptr) + 8 * 24 * 3600;
  if (X509_cmp_time(X509_get0_notAfter(ca.get()), const_cast<time_t*>(&horizon)) <= 0) return none;
  return {std::move(ca), std::move(key)};
}
}  // namespace

RunCertificates issue_run_certificates(const std::string& dir, const std::string& run, const std::vector<std::string>& clients,
                                       bool keep_ca_key) {
  fs::create_directories(fs::path(dir) / "clients");
  chmod(dir.c_str(), 0700);
  RunCertificates out;
  out.ca_file = (fs::path(dir) / "ca.crt").string();
  // A kept CA is used again: the certificates it signed for joined clients stay valid across a
  // restart of the run. Otherwise a new one.
  auto [ca, ca_key] = keep_ca_key ? kept_ca(dir) : std::pair<Cert, Key>{Cert(nullptr, X509_free), Key(nullptr, EVP_PKEY_free)};
  if (!ca) {
    ca_key = new_key();
    ca = make_certificate("zk0 run " + run + " CA", ca_key.get(), nullptr, nullptr, kRunCertificateSeconds,
                          {{NID_basic_constraints, "critical,CA:TRUE"}, {NID_key_usage, "critical,keyCertSign,cRLSign"}});
    write_file_atomic(out.ca_file, pem_of(ca.get()));
    if (keep_ca_key) {
      write_file_atomic((fs::path(dir) / "ca.key").string(), pem_of(ca_key.get()));
      chmod((fs::path(dir) / "ca.key").c_str(), 0600);
    }
  }
  if (keep_ca_key) out.ca_key_file = (fs::path(dir) / "ca.key").string();
  const Key server_key = new_key();
  const Cert server = make_certificate("aggregator", server_key.get(), ca.get(), ca_key.get(), kRunCertificateSeconds,
                                       {{NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"},
                                        {NID_key_usage, "critical,digitalSignature"},
                                        {NID_ext_key_usage, "serverAuth"}});
  out.aggregator = write_pair(fs::path(dir) / "aggregator", server.get(), server_key.get());
  for (const auto& client : clients) {
    const Key key = new_key();
    const Cert cert = make_certificate(client, key.get(), ca.get(), ca_key.get(), kRunCertificateSeconds,
                                       client_extensions(run, client));
    out.clients[client] = write_pair(fs::path(dir) / "clients" / client, cert.get(), key.get());
  }
  return out;
}

}  // namespace zk0
