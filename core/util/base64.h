#pragma once
// Base64 (RFC 4648): the standard alphabet with padding, as Kubernetes stores Secret data and
// kubeconfigs inline certificates, and the URL alphabet without padding, as join tokens carry
// their claims.
#include <stdexcept>
#include <string>

namespace zk0 {

enum class Base64 { kStandard, kUrl };

std::string base64_encode(const std::string& bytes, Base64 alphabet);
// Skips padding and line breaks; throws std::invalid_argument on any other character outside
// the alphabet.
std::string base64_decode(const std::string& text, Base64 alphabet);

}  // namespace zk0
