#pragma once
// The aggregator's last status as its termination message: on Kubernetes the kubelet keeps what a
// container wrote to /dev/termination-log in the pod's status after the process is gone, so the
// operator reads the run's final round and loss there (its /status endpoint has gone with it).
#include <string>

namespace zk0 {

// The status document (Coordinator::status_json) reduced to what fits the kubelet's 4096 bytes:
// the run's phase, round and loss, its message (capped), and per client its state, last loss and
// when it was last seen, while they fit.
std::string termination_summary(const std::string& status_json);

// Writes termination_summary(status_json) to `path`; a failure to write is logged, never thrown:
// the process is ending anyway.
void write_termination_message(const std::string& path, const std::string& status_json);

}  // namespace zk0
