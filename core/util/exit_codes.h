#pragma once
// Exit codes of zk0's processes. The operator reads them from terminated containers to decide
// whether a new pod can help.
namespace zk0 {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;         // unexpected failure: a retry may succeed
constexpr int kExitInvalidInput = 2;  // invalid spec or arguments: a retry cannot help
constexpr int kExitRunFailed = 3;     // the run failed by its own rules (quorum, start timeout)

}  // namespace zk0
