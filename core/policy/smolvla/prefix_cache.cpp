#include "core/policy/smolvla/prefix_cache.h"

#include <cstring>
#include <filesystem>

#include "core/policy/policy.h"
#include "core/policy/smolvla/cache_entry.h"
#include "core/util/fs.h"
#include "core/util/log.h"

namespace zk0::smolvla {

namespace fs = std::filesystem;

int64_t CachedPrefix::bytes() const {
  int64_t total = pad_mask.numel();
  for (const auto& k : keys) total += k.numel() * static_cast<int64_t>(k.element_size());
  for (const auto& v : values) total += v.numel() * static_cast<int64_t>(v.element_size());
  return total;
}

PrefixCache::PrefixCache(const PrefixCacheConfig& config) : config_(config) {
  if (config_.disk_bytes <= 0) return;
  fs::create_directories(config_.disk_dir);
  // Entries from an earlier process: oldest first by modification time, so eviction stays LRU.
  std::vector<std::pair<fs::file_time_type, fs::path>> files;
  for (const auto& e : fs::directory_iterator(config_.disk_dir))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") files.emplace_back(e.last_write_time(), e.path());
  std::sort(files.begin(), files.end());
  for (const auto& [time, path] : files) {
    const auto bytes = static_cast<int64_t>(fs::file_size(path));
    disk_lru_.push_front(path.stem().string());
    disk_[path.stem().string()] = {bytes, disk_lru_.begin()};
    stats_.disk_bytes += bytes;
  }
  stats_.disk_entries = static_cast<int64_t>(disk_.size());
  evict_disk(0);  // an earlier process may have had a larger bound
}

std::string PrefixCache::disk_path(const std::string& key) const {
  return (fs::path(config_.disk_dir) / (key + ".safetensors")).string();
}

std::optional<CachedPrefix> PrefixCache::get(const std::string& key, const at::Device& device) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = memory_.find(key); it != memory_.end()) {
    memory_lru_.splice(memory_lru_.begin(), memory_lru_, it->second.lru);
    ++stats_.memory_hits;
    return it->second.value;
  }
  if (auto on_disk = read_disk(key)) {
    ++stats_.disk_hits;
    CachedPrefix entry = *on_disk;
    for (auto& k : entry.keys) k = k.to(device);
    for (auto& v : entry.values) v = v.to(device);
    entry.pad_mask = entry.pad_mask.to(device);
    put_memory(key, entry);
    return entry;
  }
  ++stats_.misses;
  return std::nullopt;
}

void PrefixCache::put(const std::string& key, const CachedPrefix& entry) {
  std::lock_guard<std::mutex> lock(mu_);
  put_memory(key, entry);
  if (config_.disk_bytes > 0 && !disk_.count(key)) put_disk(key, entry);
}

void PrefixCache::put_memory(const std::string& key, const CachedPrefix& entry) {
  const int64_t bytes = entry.bytes();
  if (bytes > config_.memory_bytes || memory_.count(key)) return;
  while (stats_.memory_bytes + bytes > config_.memory_bytes && !memory_lru_.empty()) {
    auto victim = memory_.find(memory_lru_.back());
    stats_.memory_bytes -= victim->second.value.bytes();
    memory_.erase(victim);
    memory_lru_.pop_back();
  }
  memory_lru_.push_front(key);
  memory_[key] = {entry, memory_lru_.begin()};
  stats_.memory_bytes += bytes;
  stats_.memory_entries = static_cast<int64_t>(memory_.size());
}

void PrefixCache::evict_disk(int64_t room) {
  while (stats_.disk_bytes + room > config_.disk_bytes && !disk_lru_.empty()) {
    const std::string victim = disk_lru_.back();
    std::error_code ec;
    fs::remove(disk_path(victim), ec);
    stats_.disk_bytes -= disk_[victim].first;
    disk_.erase(victim);
    disk_lru_.pop_back();
  }
  stats_.disk_entries = static_cast<int64_t>(disk_.size());
}

void PrefixCache::put_disk(const std::string& key, const CachedPrefix& entry) {
  ParameterSet set;
  for (size_t l = 0; l < entry.keys.size(); ++l) {
    set.tensors.push_back(copy_tensor("key." + std::to_string(l), entry.keys[l]));
    set.tensors.push_back(copy_tensor("value." + std::to_string(l), entry.values[l]));
  }
  set.tensors.push_back(copy_tensor("pad_mask", entry.pad_mask));
  // The header (names, shapes, key, checksum) is far below this allowance.
  const int64_t expected = static_cast<int64_t>(set.total_bytes()) + 4096 + static_cast<int64_t>(key.size());
  if (expected > config_.disk_bytes) return;  // never fits: not worth evicting everything for
  evict_disk(expected);
  const std::string path = disk_path(key);
  try {
    write_file_atomic(path, encode_cache_entry(key, set));
  } catch (const std::exception& e) {
    // A full or read-only disk costs recomputation, not the training run.
    log_warn("prefix_cache_write_failed", {{"file", path}, {"error", e.what()}});
    return;
  }
  const auto bytes = static_cast<int64_t>(fs::file_size(path));
  disk_lru_.push_front(key);
  disk_[key] = {bytes, disk_lru_.begin()};
  stats_.disk_bytes += bytes;
  evict_disk(0);  // the allowance was too small after all: the oldest go, this one last
}

std::optional<CachedPrefix> PrefixCache::read_disk(const std::string& key) {
  auto it = disk_.find(key);
  if (it == disk_.end()) return std::nullopt;
  const std::string path = disk_path(key);
  const auto drop = [&](const std::string& why) {
    log_warn("prefix_cache_entry_dropped", {{"file", path}, {"error", why}});
    ++stats_.corrupt_entries;
    std::error_code ec;
    fs::remove(path, ec);
    stats_.disk_bytes -= it->second.first;
    disk_lru_.erase(it->second.second);
    disk_.erase(it);
    stats_.disk_entries = static_cast<int64_t>(disk_.size());
  };
  try {
    const ParameterSet set = decode_cache_entry(read_file(path), key, path);
    CachedPrefix entry;
    for (size_t l = 0; set.find("key." + std::to_string(l)); ++l) {
      entry.keys.push_back(to_aten(set.at("key." + std::to_string(l))));
      entry.values.push_back(to_aten(set.at("value." + std::to_string(l))));
    }
    entry.pad_mask = to_aten(set.at("pad_mask"));
    disk_lru_.splice(disk_lru_.begin(), disk_lru_, it->second.second);
    return entry;
  } catch (const std::exception& e) {
    // A flipped bit, a truncated write, a file renamed over another key.
    drop(e.what());
    return std::nullopt;
  }
}

}  // namespace zk0::smolvla
