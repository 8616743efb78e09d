#pragma once
// YAML <-> JSON for documents that are both (FederationRuns, CRDs): unquoted scalars that read
// as integers, numbers or booleans become those; everything else stays a string.
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

namespace zk0 {

nlohmann::json yaml_to_json(const YAML::Node& node);
// Keeps the mappings' key order (nlohmann::json sorts keys): where order means something, as
// the cameras of a SmolVLA config's input_features do.
nlohmann::ordered_json yaml_to_ordered_json(const YAML::Node& node);
YAML::Node json_to_yaml(const nlohmann::json& value);
YAML::Node json_to_yaml(const nlohmann::ordered_json& value);

}  // namespace zk0
