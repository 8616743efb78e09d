#include "core/util/yaml_json.h"

namespace zk0 {

namespace {

template <typename Json>
YAML::Node to_yaml_node(const Json& j) {
  if (j.is_object()) {
    YAML::Node n(YAML::NodeType::Map);
    for (auto it = j.begin(); it != j.end(); ++it) n[it.key()] = to_yaml_node(it.value());
    return n;
  }
  if (j.is_array()) {
    YAML::Node n(YAML::NodeType::Sequence);
    for (const auto& v : j) n.push_back(to_yaml_node(v));
    return n;
  }
  if (j.is_string()) return YAML::Node(j.template get<std::string>());
  if (j.is_boolean()) return YAML::Node(j.template get<bool>());
  if (j.is_number_integer()) return YAML::Node(j.template get<int64_t>());
  if (j.is_number()) return YAML::Node(j.template get<double>());
  return YAML::Node();
}

template <typename Json>
Json from_yaml_node(const YAML::Node& n) {
  if (n.IsMap()) {
    Json j = Json::object();
    for (const auto& kv : n) j[kv.first.as<std::string>()] = from_yaml_node<Json>(kv.second);
    return j;
  }
  if (n.IsSequence()) {
    Json j = Json::array();
    for (const auto& v : n) j.push_back(from_yaml_node<Json>(v));
    return j;
  }
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    if (n.Tag() != "!") {  // unquoted: a number or boolean where it reads as one
      int64_t i;
      double d;
      bool b;
      if (YAML::convert<int64_t>::decode(n, i)) return i;
      if (YAML::convert<double>::decode(n, d)) return d;
      if (YAML::convert<bool>::decode(n, b)) return b;
    }
    return s;
  }
  return nullptr;
}

}  // namespace

YAML::Node json_to_yaml(const nlohmann::json& j) { return to_yaml_node(j); }
YAML::Node json_to_yaml(const nlohmann::ordered_json& j) { return to_yaml_node(j); }
nlohmann::json yaml_to_json(const YAML::Node& n) { return from_yaml_node<nlohmann::json>(n); }
nlohmann::ordered_json yaml_to_ordered_json(const YAML::Node& n) { return from_yaml_node<nlohmann::ordered_json>(n); }

}  // namespace zk0
