#pragma once
// Datasets from the Hugging Face Hub are read from the Hub's cache layout, where
// `huggingface-cli download --repo-type dataset` (the operator's init container, or a user on a
// laptop) puts them:
//   $HF_HUB_CACHE (or $HF_HOME/hub, or ~/.cache/huggingface/hub)
//     datasets--OWNER--NAME/refs/REVISION        -> commit hash
//     datasets--OWNER--NAME/snapshots/COMMIT/... -> the files
//     models--OWNER--NAME/...                      -> a model's (SmolVLA's backbone config and tokenizer)
// zk0 itself never downloads: the pod's network policy and the robot owner decide that.
#include <string>

#include "core/spec/federation_spec.h"  // looks_like_hub_id

namespace zk0 {

std::string hub_cache_root();  // from the environment, as huggingface_hub resolves it

enum class HubRepoType { Dataset, Model };

// The snapshot folder of repo_id at revision (a branch, tag or commit hash). Throws naming the
// folder it looked in and the command that fills it when the repository is not there.
std::string hub_snapshot_path(const std::string& repo_id, const std::string& revision,
                              const std::string& cache_root = hub_cache_root(),
                              HubRepoType type = HubRepoType::Dataset);

}  // namespace zk0
