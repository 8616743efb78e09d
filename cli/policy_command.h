#pragma once
// `zk0 policy run ...`: a SmolVLA checkpoint on recorded inputs, every intermediate written out.
namespace zk0 {
int policy_command(int argc, char** argv);  // argv[0] is "policy"
}
