#pragma once
// A plain-HTTP GET with a deadline and a cap on the answer: how the operator reads an
// aggregator's /status. The aggregator's pod is not trusted with the operator's memory (a 256 Mi
// limit): a body over the cap, a peer that never answers or one that trickles fail the same way.
#include <chrono>
#include <optional>
#include <string>

namespace zk0 {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// host: an IPv4 or IPv6 literal. Throws std::runtime_error saying what went wrong (refused,
// timed out, too large, malformed).
HttpResponse http_get(const std::string& host, int port, const std::string& path, size_t max_bytes,
                      std::chrono::milliseconds timeout);

}  // namespace zk0
