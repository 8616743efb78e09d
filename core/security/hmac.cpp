#include "core/security/hmac.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdexcept>

#include "core/tensor/hash.h"

namespace zk0 {

std::string hmac_sha256_hex(const std::string& key, const std::string& message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
            message.size(), out, &len))
    throw std::runtime_error("HMAC-SHA256 failed");
  return to_hex(out, len);
}

}  // namespace zk0
