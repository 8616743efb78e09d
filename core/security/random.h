#pragma once
// Secrets that must not be guessed (session ids, signing keys): bytes from the operating
// system's CSPRNG (OpenSSL's RAND_bytes), and comparison in constant time.
#include <cstddef>
#include <string>

namespace zk0 {

// `bytes` random bytes as lowercase hex (2 * bytes characters). Throws if the CSPRNG fails.
std::string random_hex(size_t bytes);

// a == b without a timing difference that depends on where they differ.
bool constant_time_equal(const std::string& a, const std::string& b);

}  // namespace zk0
