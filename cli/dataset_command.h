#pragma once
// `zk0 dataset ...`: look into LeRobot datasets without training anything.
namespace zk0 {
int dataset_command(int argc, char** argv);  // argv[0] is "dataset"
}
