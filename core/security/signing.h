#pragma once
// Signatures over short statements (the contribution ledger's entries and a worker's claims about
// its update): with the private key of a TLS certificate (ECDSA or RSA, over SHA-256), or with an
// Ed25519 key of the signer's own where it has no certificate. Keys and certificates travel as
// PEM; signatures as raw bytes (callers base64 them for JSON).
#include <memory>
#include <string>

namespace zk0 {

class SigningKey {
 public:
  // A PEM private key (PKCS#8 or traditional: a certificate's key file). Throws naming `what`.
  static SigningKey from_pem(const std::string& pem, const std::string& what);
  // Reads `path`, or creates a new Ed25519 key there (mode 0600) when it does not exist; an empty
  // path: a key in memory only.
  static SigningKey load_or_create_ed25519(const std::string& path);

  std::string sign(const std::string& message) const;
  // SubjectPublicKeyInfo, PEM: what verify_signature takes.
  std::string public_key_pem() const;

 private:
  struct Key;
  explicit SigningKey(std::shared_ptr<Key> key) : key_(std::move(key)) {}
  std::shared_ptr<Key> key_;
};

// Whether `signature` is `message` signed by the key of `key_or_certificate_pem` (a public key
// or a certificate, PEM). Malformed input verifies as false.
bool verify_signature(const std::string& key_or_certificate_pem, const std::string& message, const std::string& signature);

// Empty when `certificate_pem` was issued by the CA of `ca_pem` (chain and signature; not its
// validity period, which an audit long after a run would find expired), else why not.
std::string certificate_chain_problem(const std::string& certificate_pem, const std::string& ca_pem);

}  // namespace zk0
