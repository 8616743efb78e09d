#pragma once
// LeRobot's processor files in a SmolVLA pretrained folder: policy_preprocessor.json and
// policy_postprocessor.json (the pipeline steps make_smolvla_pre_post_processors builds) and the
// normalizer's statistics in the safetensors file each names (shared/reference/smolvla.md §2.5).
#include <optional>
#include <string>

#include "core/data/dataset.h"
#include "core/policy/smolvla/config.h"

namespace zk0::smolvla {

struct NormalizationStats {
  FeatureStats state, action;  // MEAN_STD, as SmolVLA's normalization_mapping; undefined: none
};

void write_processor_files(const std::string& dir, const Config& config, const NormalizationStats& stats);

// The statistics of a folder's normalizer step, if it has processor files. A feature without
// stats stays undefined (LeRobot then passes it through: smolvla_base's own file has none under
// these names). Throws naming the file when it is there but unreadable.
std::optional<NormalizationStats> read_processor_stats(const std::string& dir);

}  // namespace zk0::smolvla
