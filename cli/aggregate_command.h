#pragma once
// `zk0 aggregate`: a spec's strategy applied to update files, through the code the aggregator runs.
namespace zk0 {
int aggregate_command(int argc, char** argv);  // argv[0] is "aggregate"
}
