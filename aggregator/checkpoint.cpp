#include "aggregator/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/tensor/hash.h"
#include "core/util/fs.h"

namespace zk0 {
namespace fs = std::filesystem;

namespace {

const char* kFiles[] = {"model.safetensors", "config.json", "aggregator_state.json"};

std::string file_sha256(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("checkpoint: cannot read " + path.string());
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return to_hex(h.finish());
}

std::string round_dir_name(int round) {
  char name[32];
  std::snprintf(name, sizeof name, "round_%04d", round);
  return name;
}

}  // namespace

std::string checkpoint_root(const std::string& output_dir) { return (fs::path(output_dir) / "checkpoints").string(); }

std::string write_checkpoint(const std::string& output_dir, Policy& policy, const AggregatorState& state, int keep_last) {
  const fs::path root = checkpoint_root(output_dir);
  const fs::path final_dir = root / round_dir_name(state.round);
  const fs::path tmp = root / ("." + round_dir_name(state.round) + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_pretrained(policy, tmp.string());
  const nlohmann::json doc = {{"round", state.round},
                              {"spec_fingerprint", state.spec_fingerprint},
                              {"global_digest", state.global_digest},
                              {"strategy", state.strategy},
                              {"history", state.history}};
  write_file_atomic((tmp / "aggregator_state.json").string(), doc.dump(2) + "\n");
  std::ostringstream sums;
  for (const char* f : kFiles) sums << file_sha256(tmp / f) << "  " << f << "\n";
  write_file_atomic((tmp / "SHA256SUMS").string(), sums.str());
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  fsync_directory(root.string());
  write_file_atomic((root / "latest").string(), round_dir_name(state.round) + "\n");

  if (keep_last > 0) {
    std::vector<fs::path> rounds;
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory() && e.path().filename().string().rfind("round_", 0) == 0) rounds.push_back(e.path());
    std::sort(rounds.begin(), rounds.end());
    for (size_t i = 0; i + static_cast<size_t>(keep_last) < rounds.size(); ++i) fs::remove_all(rounds[i]);
  }
  return final_dir.string();
}

std::optional<LoadedCheckpoint> find_latest_checkpoint(const std::string& output_dir) {
  const fs::path root = checkpoint_root(output_dir);
  const fs::path latest = root / "latest";
  if (!fs::exists(latest)) return std::nullopt;
  std::string name = read_file(latest.string());
  name.erase(name.find_last_not_of(" \n\r\t") + 1);
  const fs::path dir = root / name;
  std::istringstream sums(read_file((dir / "SHA256SUMS").string()));
  std::string digest, file;
  int checked = 0;
  while (sums >> digest >> file) {
    if (file_sha256(dir / file) != digest)
      throw std::runtime_error("checkpoint " + (dir / file).string() + ": SHA-256 does not match SHA256SUMS");
    ++checked;
  }
  if (checked != static_cast<int>(std::size(kFiles)))
    throw std::runtime_error("checkpoint " + dir.string() + ": SHA256SUMS lists " + std::to_string(checked) +
                             " files, expected " + std::to_string(std::size(kFiles)));
  const auto doc = nlohmann::json::parse(read_file((dir / "aggregator_state.json").string()));
  LoadedCheckpoint out;
  out.dir = dir.string();
  out.state.round = doc.at("round").get<int>();
  out.state.spec_fingerprint = doc.at("spec_fingerprint").get<std::string>();
  out.state.global_digest = doc.at("global_digest").get<std::string>();
  out.state.strategy = doc.at("strategy");
  out.state.history = doc.at("history");
  return out;
}

}  // namespace zk0
