// A LeRobot dataset's metadata (info.json, the episode, task and statistics tables of v2.1 and
// v3.0) written by anyone: load_metadata either describes it or names the file and the problem.
//
// Input: one byte choosing which file of a valid dataset to replace, then that file's bytes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/lerobot/metadata.h"
#include "core/util/fs.h"

#include <fstream>
#include "templates.h"

namespace fs = std::filesystem;

namespace {

struct Target {
  std::string dataset, file, original;
};

std::vector<Target>& targets() {
  static std::vector<Target> all = [] {
    const fs::path work = fs::temp_directory_path() / ("zk0-fuzz-metadata-" + std::to_string(getpid()));
    fs::remove_all(work);
    fs::copy(ZK0_FUZZ_TEMPLATES, work, fs::copy_options::recursive);
    std::vector<Target> out;
    for (const auto& f : zk0::fuzz::template_files()) {
      const fs::path file = work / f.dataset / f.path;
      out.push_back({(work / f.dataset).string(), file.string(), zk0::read_file(file.string())});
    }
    return out;
  }();
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Target& t = targets()[data[0] % targets().size()];
  std::ofstream(t.file, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
  try {
    const zk0::lerobot::Metadata m = zk0::lerobot::load_metadata(t.dataset);
    for (const auto& e : m.episodes) m.data_file(e);
    for (const auto& f : m.features)
      if (f.dtype != "video" && f.dtype != "image" && f.dtype != "string") m.stats(f.key);
  } catch (const std::runtime_error&) {
  } catch (const std::invalid_argument&) {
  } catch (const std::out_of_range&) {
  }
  std::ofstream(t.file, std::ios::binary | std::ios::trunc) << t.original;
  return 0;
}
