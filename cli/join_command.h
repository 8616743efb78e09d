#pragma once
// `zk0 join`: a robot owner's one command. With the endpoint and the join token the run's owner
// gave them and the path of their own LeRobot dataset, it checks what it can before anything
// leaves the machine (the token's shape, the dataset, the device), makes a key that never leaves
// the machine, gets a client certificate for it from the aggregator (core/security/join_token.h),
// and becomes that client's worker. Run again later, it rejoins with the certificate it kept.
namespace zk0 {

int join_command(int argc, char** argv);

}  // namespace zk0
