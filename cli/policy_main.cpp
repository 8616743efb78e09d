// zk0 as a GPU machine without Arrow, FFmpeg or gRPC builds it (ZK0_DEVICE_BUILD,
// scripts/gpu-check.sh): the policy command alone, which the SmolVLA parity tests drive.
#include <iostream>
#include <string>

#include "cli/policy_command.h"
#include "core/util/exit_codes.h"

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "policy") return zk0::policy_command(argc - 1, argv + 1);
  std::cerr << "zk0: this is a device build (ZK0_DEVICE_BUILD), which has only `zk0 policy run`\n";
  return zk0::kExitInvalidInput;
}
