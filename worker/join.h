#pragma once
// `zk0 join` (and `zk0-worker join`, the same in the worker's container image): a robot owner's
// one command. With the endpoint and the join token the run's owner
// gave them and the path of their own LeRobot dataset, it checks what it can before anything
// leaves the machine (the token's shape, the dataset, the device), makes a key that never leaves
// the machine, gets a client certificate for it from the aggregator (core/security/join_token.h),
// and becomes that client's worker. Run again later, it rejoins with the certificate it kept.
// The token comes on the command line or, where command lines are visible to others (a pod's
// spec, `ps`), from a file (--token-file, a mounted Secret).
namespace zk0 {

int join_command(int argc, char** argv);

}  // namespace zk0
