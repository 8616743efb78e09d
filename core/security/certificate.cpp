#include "core/security/certificate.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <stdexcept>

#include "core/tensor/hash.h"

namespace zk0 {

namespace {
const char* kIdentityPrefix = "spiffe://zk0.io/run/";
}

CertificateInfo parse_certificate(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (!cert) throw std::runtime_error("not a PEM certificate");
  CertificateInfo info;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  X509_digest(cert.get(), EVP_sha256(), md, &md_len);
  info.fingerprint_sha256 = to_hex(md, md_len);
  std::unique_ptr<BIO, decltype(&BIO_free)> out(BIO_new(BIO_s_mem()), BIO_free);
  X509_NAME_print_ex(out.get(), X509_get_subject_name(cert.get()), 0, XN_FLAG_RFC2253);
  char* text = nullptr;
  const long n = BIO_get_mem_data(out.get(), &text);
  info.subject.assign(text, static_cast<size_t>(n));
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI && name->type != GEN_DNS) continue;
    const ASN1_IA5STRING* s = name->type == GEN_URI ? name->d.uniformResourceIdentifier : name->d.dNSName;
    std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
    (name->type == GEN_URI ? info.uri_sans : info.dns_sans).push_back(std::move(value));
  }
  GENERAL_NAMES_free(names);
  return info;
}

std::string client_identity_uri(const std::string& run, const std::string& client) {
  return kIdentityPrefix + run + "/client/" + client;
}

std::optional<std::string> client_named_by(const CertificateInfo& certificate, const std::string& run) {
  const std::string prefix = kIdentityPrefix + run + "/client/";
  std::optional<std::string> found;
  for (const auto& uri : certificate.uri_sans) {
    if (uri.rfind(prefix, 0) != 0) continue;
    const std::string name = uri.substr(prefix.size());
    if (name.empty() || name.find('/') != std::string::npos) continue;
    if (found && *found != name) return std::nullopt;  // two different names: trust neither
    found = name;
  }
  return found;
}

}  // namespace zk0
