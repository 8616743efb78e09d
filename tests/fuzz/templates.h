#pragma once
// The metadata files of two small valid LeRobot datasets (templates/v21, templates/v30), in a
// fixed order: lerobot_metadata.cpp replaces the one its input's first byte picks.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace zk0::fuzz {

struct TemplateFile {
  std::string dataset;  // relative to the templates folder: v21 or v30
  std::string path;     // relative to the dataset
};

inline std::vector<TemplateFile> template_files() {
  namespace fs = std::filesystem;
  std::vector<TemplateFile> out;
  for (const char* dataset : {"v21", "v30"}) {
    const fs::path root = fs::path(ZK0_FUZZ_TEMPLATES) / dataset;
    std::vector<std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(root))
      if (e.is_regular_file()) files.push_back(fs::relative(e.path(), root).string());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) out.push_back({dataset, f});
  }
  return out;
}

}  // namespace zk0::fuzz
