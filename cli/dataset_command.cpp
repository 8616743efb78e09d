#include "cli/dataset_command.h"

#include <iostream>
#include <string>

#include "core/lerobot/inspect.h"

namespace zk0 {

namespace {
int usage() {
  std::cerr << "usage:\n  zk0 dataset inspect PATH [--json]   version, features, episodes, tasks and problems\n";
  return 2;
}
}  // namespace

int dataset_command(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string sub = argv[1];
  if (sub == "inspect" && (argc == 3 || (argc == 4 && std::string(argv[3]) == "--json"))) {
    try {
      const auto report = lerobot::inspect_dataset(lerobot::load_metadata(argv[2]));
      if (argc == 4) std::cout << report.dump(2) << "\n";
      else std::cout << lerobot::format_report(report);
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "zk0: " << e.what() << "\n";
      return 1;
    }
  }
  return usage();
}

}  // namespace zk0
