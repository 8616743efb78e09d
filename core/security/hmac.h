#pragma once
// HMAC-SHA256: what signs a checkpoint with a key only the aggregator holds, so that whoever can
// write the checkpoint volume cannot plant a model the aggregator would resume from.
#include <string>

namespace zk0 {

std::string hmac_sha256_hex(const std::string& key, const std::string& message);

}  // namespace zk0
