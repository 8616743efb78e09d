#include "core/lerobot/hub_cache.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "core/util/fs.h"

namespace zk0 {

namespace fs = std::filesystem;

std::string hub_cache_root() {
  if (const char* v = std::getenv("HF_HUB_CACHE"); v && *v) return v;
  if (const char* v = std::getenv("HF_HOME"); v && *v) return std::string(v) + "/hub";
  if (const char* v = std::getenv("XDG_CACHE_HOME"); v && *v) return std::string(v) + "/huggingface/hub";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/huggingface/hub";
}

namespace {

bool is_commit_hash(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c)) || std::isupper(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

std::string hub_snapshot_path(const std::string& repo_id, const std::string& revision, const std::string& cache_root,
                              HubRepoType type) {
  const std::string kind = type == HubRepoType::Dataset ? "dataset" : "model";
  const auto slash = repo_id.find('/');
  if (slash == std::string::npos) throw std::invalid_argument("hub " + kind + " '" + repo_id + "': must look like owner/name");
  const fs::path repo =
      fs::path(cache_root) / (kind + "s--" + repo_id.substr(0, slash) + "--" + repo_id.substr(slash + 1));
  const std::string hint = "; fill the cache with: huggingface-cli download --repo-type " + kind + " " + repo_id +
                           " --revision " + revision + " (HF_HUB_CACHE=" + cache_root + ")";
  std::string commit = revision;
  if (!is_commit_hash(revision)) {
    const fs::path ref = repo / "refs" / revision;
    if (!fs::exists(ref)) throw std::runtime_error("hub " + kind + " " + repo_id + "@" + revision + ": no " + ref.string() + hint);
    commit = read_file(ref.string());
    while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
    if (!is_commit_hash(commit))
      throw std::runtime_error("hub " + kind + " " + repo_id + "@" + revision + ": " + ref.string() + " does not hold a commit hash");
  }
  const fs::path snapshot = repo / "snapshots" / commit;
  if (!fs::is_directory(snapshot))
    throw std::runtime_error("hub " + kind + " " + repo_id + "@" + revision + ": no snapshot folder " + snapshot.string() + hint);
  return snapshot.string();
}

}  // namespace zk0
