#pragma once
// Datasets by what a spec names: synthetic, a LeRobot folder, or a Hub snapshot. Apart from
// dataset.h so that the policies (zk0_policy) build without the dataset readers (Arrow, FFmpeg).
#include <memory>

#include "core/data/dataset.h"

namespace zk0 {

// Opens the dataset a spec names. The chunk size comes from the policy, and so does whether
// camera frames are decoded at all (a policy without vision never pays for video decoding).
std::unique_ptr<Dataset> open_dataset(const DatasetSpec& spec, int64_t chunk_size, bool images);

}  // namespace zk0
