#include "core/data/partition.h"

#include <algorithm>
#include <map>
#include <random>
#include <stdexcept>

#include "core/lerobot/hub_cache.h"
#include "core/lerobot/metadata.h"
#include "core/util/seed.h"

namespace zk0 {

std::vector<std::vector<int64_t>> split_episodes(const std::vector<EpisodeTask>& episodes, int clients, PartitionScheme by,
                                                 double alpha, uint64_t seed) {
  if (clients < 1) throw std::invalid_argument("split_episodes: clients must be at least 1");
  std::vector<std::vector<int64_t>> shares(static_cast<size_t>(clients));
  const size_t n = episodes.size();
  switch (by) {
    case PartitionScheme::IID: {
      std::vector<int64_t> order;
      for (const auto& e : episodes) order.push_back(e.episode);
      std::mt19937_64 rng(mix_seed(seed, 0x11D));
      std::shuffle(order.begin(), order.end(), rng);
      for (size_t i = 0; i < n; ++i) shares[i % shares.size()].push_back(order[i]);
      break;
    }
    case PartitionScheme::Task: {
      std::vector<EpisodeTask> sorted = episodes;
      std::stable_sort(sorted.begin(), sorted.end(), [](const EpisodeTask& a, const EpisodeTask& b) {
        return a.task != b.task ? a.task < b.task : a.episode < b.episode;
      });
      // Contiguous runs whose sizes differ by at most one.
      for (size_t c = 0; c < shares.size(); ++c)
        for (size_t i = c * n / shares.size(); i < (c + 1) * n / shares.size(); ++i) shares[c].push_back(sorted[i].episode);
      break;
    }
    case PartitionScheme::Dirichlet: {
      if (!(alpha > 0)) throw std::invalid_argument("split_episodes: dirichlet alpha must be greater than 0");
      std::map<std::string, std::vector<int64_t>> by_task;  // tasks in a fixed (sorted) order
      for (const auto& e : episodes) by_task[e.task].push_back(e.episode);
      std::mt19937_64 rng(mix_seed(seed, 0xD1A));
      for (auto& [task, eps] : by_task) {
        std::shuffle(eps.begin(), eps.end(), rng);
        // Proportions p ~ Dirichlet(alpha, ..., alpha): independent Gamma(alpha, 1) draws, normalised.
        std::gamma_distribution<double> gamma(alpha, 1.0);
        std::vector<double> p(shares.size());
        double total = 0;
        for (auto& x : p) total += (x = gamma(rng));
        if (!(total > 0)) p.assign(p.size(), 1.0), total = static_cast<double>(p.size());  // every draw underflowed
        // Client c takes the episodes between the cumulative proportions before and after it.
        double cumulative = 0;
        size_t from = 0;
        for (size_t c = 0; c < shares.size(); ++c) {
          cumulative += p[c] / total;
          const size_t to = c + 1 == shares.size() ? eps.size()
                                                   : std::min(eps.size(), static_cast<size_t>(cumulative * static_cast<double>(eps.size()) + 0.5));
          for (size_t i = from; i < to; ++i) shares[c].push_back(eps[i]);
          from = std::max(from, to);
        }
      }
      break;
    }
  }
  for (auto& s : shares) std::sort(s.begin(), s.end());
  return shares;
}

std::vector<EpisodeTask> episode_tasks(const lerobot::Metadata& meta, const std::vector<int64_t>& episodes) {
  std::vector<EpisodeTask> tasks;
  const auto add = [&](const lerobot::EpisodeMeta& e) { tasks.push_back({e.index, e.tasks.empty() ? std::string() : e.tasks.front()}); };
  if (episodes.empty())
    for (const auto& e : meta.episodes) add(e);
  for (int64_t ep : episodes) add(meta.episode(ep));
  return tasks;
}

std::vector<int64_t> partition_share(const std::vector<EpisodeTask>& episodes, const EpisodePartition& partition,
                                     const std::string& source) {
  const auto shares = split_episodes(episodes, partition.clients, partition.by, partition.alpha, partition.seed);
  const auto& mine = shares.at(static_cast<size_t>(partition.index));
  if (mine.empty())
    throw std::runtime_error(source + ": partition " + std::to_string(partition.index) + " of " + std::to_string(partition.clients) +
                             " (by " + to_string(partition.by) + ") gets none of its " + std::to_string(episodes.size()) +
                             " episodes: use fewer clients" +
                             (partition.by == PartitionScheme::Dirichlet ? ", a larger alpha or another seed" : ""));
  return mine;
}

std::vector<std::string> partition_problems(const FederationSpec& spec) {
  std::vector<std::string> problems;
  struct Split {
    std::vector<std::vector<int64_t>> shares;
    size_t episodes = 0;
  };
  std::map<std::string, Split> splits;  // one per dataset and rule
  for (size_t i = 0; i < spec.clients.size(); ++i) {
    const DatasetSpec& d = spec.clients[i].dataset;
    if (!d.partition) continue;
    std::string root = d.path;
    if (root.empty() && !d.repo_id.empty()) {
      try {
        root = hub_snapshot_path(d.repo_id, d.revision);
      } catch (const std::exception&) {
        continue;  // not downloaded here
      }
    }
    if (root.empty()) continue;
    const EpisodePartition& p = *d.partition;
    std::string key = root + "|" + to_string(p.by) + "|" + std::to_string(p.clients) + "|" + std::to_string(p.alpha) + "|" +
                      std::to_string(p.seed);
    for (int64_t e : d.episodes) key += "," + std::to_string(e);
    const std::string field = "spec.clients[" + std::to_string(i) + "].dataset.partition";
    auto it = splits.find(key);
    if (it == splits.end()) {
      std::vector<EpisodeTask> episodes;
      try {
        episodes = episode_tasks(lerobot::load_metadata(root), d.episodes);
      } catch (const std::exception& e) {
        problems.push_back(field + ": cannot read the episodes to split: " + e.what());
        continue;
      }
      it = splits.emplace(key, Split{split_episodes(episodes, p.clients, p.by, p.alpha, p.seed), episodes.size()}).first;
    }
    if (it->second.shares.at(static_cast<size_t>(p.index)).empty())
      problems.push_back(field + ": client " + spec.clients[i].name + " gets none of the " +
                         std::to_string(it->second.episodes) + " episodes of " + d.describe() + " split by " +
                         to_string(p.by) + " among " + std::to_string(p.clients) + " clients: use fewer clients" +
                         (p.by == PartitionScheme::Dirichlet ? ", a larger alpha or another seed" : ""));
  }
  return problems;
}

}  // namespace zk0
