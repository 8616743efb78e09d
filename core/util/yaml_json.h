#pragma once
// YAML <-> JSON for documents that are both (FederationRuns, CRDs): unquoted scalars that read
// as integers, numbers or booleans become those; everything else stays a string.
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

namespace zk0 {

nlohmann::json yaml_to_json(const YAML::Node& node);
YAML::Node json_to_yaml(const nlohmann::json& value);

}  // namespace zk0
