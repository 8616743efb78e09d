#include "aggregator/checkpoint.h"
#include "core/util/json_number.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/security/hmac.h"
#include "core/security/random.h"
#include "core/tensor/hash.h"
#include "core/tensor/safetensors.h"
#include "core/util/fs.h"

namespace zk0 {
namespace fs = std::filesystem;

namespace {

// What every checkpoint holds; a policy may add files (SmolVLA's processor files), which
// SHA256SUMS lists too.
const char* kRequiredFiles[] = {"model.safetensors", "config.json", "aggregator_state.json"};
const char* kSums = "SHA256SUMS";
const char* kSignature = "SHA256SUMS.sig";
const char* kStrategyTensors = "strategy_state.safetensors";
const char* kDownloadResidual = "download_residual.safetensors";

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

bool is_round_dir_name(const std::string& s) {
  if (s.size() < 10 || s.rfind("round_", 0) != 0) return false;
  return std::all_of(s.begin() + 6, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The signature binds the sums to the round folder they belong to, so a signed SHA256SUMS of
// round 3 cannot be replayed as round 7's.
std::string signature_of(const std::string& key, const std::string& round_dir, const std::string& sums) {
  return hmac_sha256_hex(key, "zk0-checkpoint-v1\n" + round_dir + "\n" + sums);
}

}  // namespace

std::string kept_round_dir(const std::string& output_dir, int round) {
  return (fs::path(output_dir) / "updates" / round_dir_name(round)).string();
}

std::string checkpoint_root(const std::string& output_dir) { return (fs::path(output_dir) / "checkpoints").string(); }

std::string write_checkpoint(const std::string& output_dir, Policy& policy, const AggregatorState& state, int keep_last,
                             const std::string& signing_key) {
  const fs::path root = checkpoint_root(output_dir);
  const fs::path final_dir = root / round_dir_name(state.round);
  const fs::path tmp = root / ("." + round_dir_name(state.round) + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_pretrained(policy, tmp.string());
  nlohmann::json doc = {{"round", state.round},
                        {"spec_fingerprint", state.spec_fingerprint},
                        {"global_digest", state.global_digest},
                        {"strategy", state.strategy},
                        {"history", state.history}};
  if (state.ledger) doc["ledger"] = state.ledger->json();
  write_file_atomic((tmp / "aggregator_state.json").string(), doc.dump(2) + "\n");
  if (!state.strategy_tensors.tensors.empty()) write_safetensors((tmp / kStrategyTensors).string(), state.strategy_tensors);
  if (!state.download_residual.tensors.empty()) write_safetensors((tmp / kDownloadResidual).string(), state.download_residual);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(tmp))
    if (e.is_regular_file()) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  std::ostringstream sums;
  for (const auto& f : files) sums << file_sha256(tmp / f) << "  " << f << "\n";
  write_file_atomic((tmp / kSums).string(), sums.str());
  if (!signing_key.empty())
    write_file_atomic((tmp / kSignature).string(), signature_of(signing_key, round_dir_name(state.round), sums.str()) + "\n");
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

std::optional<LoadedCheckpoint> find_latest_checkpoint(const std::string& output_dir, const std::string& signing_key) {
  const fs::path root = checkpoint_root(output_dir);
  const fs::path latest = root / "latest";
  if (!fs::exists(latest)) return std::nullopt;
  std::string name = read_file(latest.string());
  name.erase(name.find_last_not_of(" \n\r\t") + 1);
  if (!is_round_dir_name(name))
    throw std::runtime_error("checkpoint " + latest.string() + ": names '" + name.substr(0, 64) + "', not a round_NNNN folder");
  return read_checkpoint((root / name).string(), signing_key);
}

std::vector<std::string> checkpoint_dirs(const std::string& output_dir) {
  std::vector<std::string> dirs;
  const fs::path root = checkpoint_root(output_dir);
  if (!fs::is_directory(root)) return dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && is_round_dir_name(e.path().filename().string())) dirs.push_back(e.path().string());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

LoadedCheckpoint read_checkpoint(const std::string& dir_name, const std::string& signing_key) {
  const fs::path dir = dir_name;
  const std::string name = dir.filename().string();
  if (!fs::is_directory(dir)) throw std::runtime_error("checkpoint " + dir.string() + ": does not exist");
  const std::string sums_text = read_file((dir / kSums).string());
  if (!signing_key.empty()) {
    if (!fs::exists(dir / kSignature))
      throw std::runtime_error("checkpoint " + (dir / kSignature).string() + ": missing; this run signs its checkpoints");
    std::string signature = read_file((dir / kSignature).string());
    signature.erase(signature.find_last_not_of(" \n\r\t") + 1);
    if (!constant_time_equal(signature, signature_of(signing_key, name, sums_text)))
      throw std::runtime_error("checkpoint " + (dir / kSignature).string() + ": signature does not verify with the run's key");
  }
  std::set<std::string> listed;
  std::istringstream sums(sums_text);
  std::string line;
  while (std::getline(sums, line)) {
    const size_t sep = line.find("  ");
    const std::string digest = line.substr(0, sep), file = sep == std::string::npos ? "" : line.substr(sep + 2);
    if (digest.size() != 64 || file.empty() || file.find('/') != std::string::npos || file == "." || file == ".." ||
        file == kSums || file == kSignature || !listed.insert(file).second)
      throw std::runtime_error("checkpoint " + (dir / kSums).string() + ": malformed line '" + line.substr(0, 128) + "'");
    if (!fs::is_regular_file(dir / file))
      throw std::runtime_error("checkpoint " + (dir / file).string() + ": listed in SHA256SUMS but missing");
    if (file_sha256(dir / file) != digest)
      throw std::runtime_error("checkpoint " + (dir / file).string() + ": SHA-256 does not match SHA256SUMS");
  }
  for (const char* f : kRequiredFiles)
    if (!listed.count(f)) throw std::runtime_error("checkpoint " + (dir / kSums).string() + ": does not list " + f);
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    if (f != kSums && f != kSignature && !listed.count(f))
      throw std::runtime_error("checkpoint " + e.path().string() + ": not listed in SHA256SUMS");
  }
  const auto doc = nlohmann::json::parse(read_file((dir / "aggregator_state.json").string()));
  LoadedCheckpoint out;
  out.dir = dir.string();
  out.state.round = static_cast<int>(json_integer(doc.at("round")));
  out.state.spec_fingerprint = doc.at("spec_fingerprint").get<std::string>();
  out.state.global_digest = doc.at("global_digest").get<std::string>();
  out.state.strategy = doc.at("strategy");
  out.state.history = doc.at("history");
  if (doc.contains("ledger")) out.state.ledger = LedgerHead::from_json(doc.at("ledger"));
  if (listed.count(kStrategyTensors)) out.state.strategy_tensors = read_safetensors((dir / kStrategyTensors).string());
  if (listed.count(kDownloadResidual)) out.state.download_residual = read_safetensors((dir / kDownloadResidual).string());
  return out;
}

}  // namespace zk0
