#pragma once
// Splitting one dataset's episodes among N clients (spec.partition): the federated-learning
// benchmarks' three shapes. iid deals the episodes out at random; task sorts them by task and
// gives each client a contiguous run (the pathological non-IID split of McMahan et al. 2017:
// few tasks per client); dirichlet shares each task's episodes out by proportions drawn from
// Dirichlet(alpha) over the clients (Hsu et al. 2019: alpha large is near iid, small is skewed).
// Deterministic for a seed, and computed from the dataset's own episode list wherever it is
// opened, so that every process gives client i the same share.
#include <cstdint>
#include <string>
#include <vector>

#include "core/lerobot/metadata.h"
#include "core/spec/federation_spec.h"

namespace zk0 {

struct EpisodeTask {
  int64_t episode = 0;
  std::string task;
};

// What a split reads of a dataset: each of `episodes` (all of them when empty) with its first
// task. Throws for an episode the dataset does not have.
std::vector<EpisodeTask> episode_tasks(const lerobot::Metadata& meta, const std::vector<int64_t>& episodes);

// Every client's episodes (sorted), shares[i] for partition index i. Some may be empty.
std::vector<std::vector<int64_t>> split_episodes(const std::vector<EpisodeTask>& episodes, int clients, PartitionScheme by,
                                                 double alpha, uint64_t seed);

// The episodes of partition.index; throws naming `source` when its share is empty.
std::vector<int64_t> partition_share(const std::vector<EpisodeTask>& episodes, const EpisodePartition& partition,
                                     const std::string& source);

}  // namespace zk0

namespace zk0 {

// What `zk0 validate` says of a spec's partitions of datasets on this machine: one problem per
// client whose share is empty, naming its field. Datasets it cannot read here (a volume claim, a
// Hub dataset not in the cache) are checked when the worker opens them.
std::vector<std::string> partition_problems(const FederationSpec& spec);

}  // namespace zk0
