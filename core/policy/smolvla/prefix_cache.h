#pragma once
// The frozen-prefix cache. Image and language tokens never attend to the state or the actions,
// and the VLM is frozen, so their keys and values at every layer depend only on the frames and
// the task: computed once per sample, they serve every later step, epoch and round. Per training
// step only the state token and the expert then run. Bounded in memory (LRU) with an optional
// bounded disk tier that survives restarts. An entry is keyed by a fingerprint of the frozen
// weights, the task's tokens and the sample: its dataset id (source, episode, frame) when the
// batch came from a dataset, else its frames' content. A dataset rewritten in place under the
// same source needs a fresh disk tier (another dir). A disk entry carries the key it was stored
// under and a SHA-256 of its payload; one that does not verify (a flipped bit, a file renamed
// over another) is dropped, counted and recomputed, never served. Safe to use from several threads.
#include <ATen/ATen.h>

#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/policy/policy.h"
#include "core/policy/smolvla/config.h"

namespace zk0::smolvla {

// One sample's image and (valid) language tokens: keys after RoPE and values at every layer.
struct CachedPrefix {
  std::vector<at::Tensor> keys, values;  // per layer [T, kv_heads, head_dim]
  at::Tensor pad_mask;                   // [T] bool
  int64_t bytes() const;
};

using zk0::PrefixCacheStats;

class PrefixCache {
 public:
  explicit PrefixCache(const PrefixCacheConfig& config);

  // The entry for `key` on `device`, from memory or else disk (then kept in memory too).
  std::optional<CachedPrefix> get(const std::string& key, const at::Device& device);
  void put(const std::string& key, const CachedPrefix& entry);
  PrefixCacheStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  struct MemoryEntry {
    CachedPrefix value;
    std::list<std::string>::iterator lru;
  };
  void put_memory(const std::string& key, const CachedPrefix& entry);
  void put_disk(const std::string& key, const CachedPrefix& entry);
  void evict_disk(int64_t room);  // oldest first, until `room` more bytes fit
  std::optional<CachedPrefix> read_disk(const std::string& key);
  std::string disk_path(const std::string& key) const;

  PrefixCacheConfig config_;
  mutable std::mutex mu_;  // the simulation runtime's policies train at once on one cache
  PrefixCacheStats stats_;
  std::list<std::string> memory_lru_;  // most recent first
  std::map<std::string, MemoryEntry> memory_;
  std::list<std::string> disk_lru_;
  std::map<std::string, std::pair<int64_t, std::list<std::string>::iterator>> disk_;  // key -> (bytes, lru)
};

}  // namespace zk0::smolvla
