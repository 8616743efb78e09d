#pragma once
// Times as the Kubernetes API writes them: RFC 3339 in UTC, with microseconds for Lease
// (MicroTime) and whole seconds elsewhere (metav1.Time).
#include <chrono>
#include <string>

namespace zk0::kube {

using SystemClock = std::chrono::system_clock;

std::string rfc3339(SystemClock::time_point t, bool microseconds = false);
inline std::string rfc3339_now(bool microseconds = false) { return rfc3339(SystemClock::now(), microseconds); }
// Parses either form; an unparseable time reads as the epoch (so it counts as long expired).
SystemClock::time_point parse_rfc3339(const std::string& s);

}  // namespace zk0::kube
