#include "core/data/open_dataset.h"

#include <stdexcept>

#include "core/data/lerobot_dataset.h"
#include "core/data/synthetic_dataset.h"
#include "core/lerobot/hub_cache.h"

namespace zk0 {

std::unique_ptr<Dataset> open_dataset(const DatasetSpec& spec, int64_t chunk_size, bool images) {
  if (spec.synthetic) return std::make_unique<SyntheticDataset>(*spec.synthetic, spec.episodes, chunk_size, spec.describe());
  if (!spec.path.empty()) return std::make_unique<LeRobotDataset>(spec.path, spec.episodes, chunk_size, images, spec.partition);
  if (!spec.repo_id.empty())
    return std::make_unique<LeRobotDataset>(hub_snapshot_path(spec.repo_id, spec.revision), spec.episodes, chunk_size, images,
                                            spec.partition);
  throw std::runtime_error("dataset " + spec.describe() + ": a volume claim is mounted by the operator on a cluster; "
                           "on this machine name the dataset by path");
}

}  // namespace zk0
