#include "core/security/signing.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <filesystem>
#include <stdexcept>

#include "core/util/fs.h"

namespace zk0 {

namespace {

using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
using PKey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

Bio read_bio(const std::string& pem) { return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free); }

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

Cert read_certificate(const std::string& pem) {
  Bio bio = read_bio(pem);
  return Cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
}

// Ed25519 signs the message itself; the others a SHA-256 of it.
const EVP_MD* digest_for(EVP_PKEY* key) { return EVP_PKEY_id(key) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256(); }

PKey public_key_of(const std::string& pem) {
  if (pem.find("CERTIFICATE") != std::string::npos) {
    Cert cert = read_certificate(pem);
    return PKey(cert ? X509_get_pubkey(cert.get()) : nullptr, EVP_PKEY_free);
  }
  Bio bio = read_bio(pem);
  return PKey(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
}

}  // namespace

struct SigningKey::Key {
  PKey pkey{nullptr, EVP_PKEY_free};
};

SigningKey SigningKey::from_pem(const std::string& pem, const std::string& what) {
  Bio bio = read_bio(pem);
  auto key = std::make_shared<Key>();
  key->pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!key->pkey) throw std::runtime_error(what + ": not a PEM private key");
  return SigningKey(std::move(key));
}

SigningKey SigningKey::load_or_create_ed25519(const std::string& path) {
  if (!path.empty() && std::filesystem::exists(path)) return from_pem(read_file(path), path);
  auto key = std::make_shared<Key>();
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* made = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &made) != 1)
    throw std::runtime_error("cannot generate an Ed25519 key");
  key->pkey.reset(made);
  if (!path.empty()) {
    Bio out(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PrivateKey(out.get(), key->pkey.get(), nullptr, nullptr, 0, nullptr, nullptr);
    write_file_atomic(path, bio_text(out.get()));
    std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  return SigningKey(std::move(key));
}

std::string SigningKey::sign(const std::string& message) const {
  MdCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t size = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, digest_for(key_->pkey.get()), nullptr, key_->pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &size, reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1)
    throw std::runtime_error("signing failed");
  std::string signature(size, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1)
    throw std::runtime_error("signing failed");
  signature.resize(size);
  return signature;
}

std::string SigningKey::public_key_pem() const {
  Bio out(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PUBKEY(out.get(), key_->pkey.get());
  return bio_text(out.get());
}

bool verify_signature(const std::string& key_or_certificate_pem, const std::string& message, const std::string& signature) {
  PKey key = public_key_of(key_or_certificate_pem);
  ERR_clear_error();
  if (!key || signature.empty()) return false;
  MdCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  const bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, digest_for(key.get()), nullptr, key.get()) == 1 &&
                  EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                                   reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  ERR_clear_error();
  return ok;
}

std::string certificate_chain_problem(const std::string& certificate_pem, const std::string& ca_pem) {
  Cert leaf = read_certificate(certificate_pem);
  if (!leaf) return "not a PEM certificate";
  Cert ca = read_certificate(ca_pem);
  if (!ca) return "the CA file holds no PEM certificate";
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  X509_STORE_add_cert(store.get(), ca.get());
  X509_STORE_set_flags(store.get(), X509_V_FLAG_NO_CHECK_TIME);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr);
  if (X509_verify_cert(ctx.get()) == 1) return "";
  return std::string("does not chain to the CA (") + X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())) + ")";
}

}  // namespace zk0
