#pragma once

namespace zk0 {

// zk0 privacy epsilon|noise ...: the accountant of strategy.privacy on its own, to plan a run.
int privacy_command(int argc, char** argv);

}  // namespace zk0
