#pragma once
// How specs are read (FederationRun, FederationMembership): one YAML mapping at a time, every
// problem collected with its field path, unknown fields reported, and the parts both kinds share
// (a dataset, resources, pod placement) read one way.
#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "core/spec/federation_spec.h"

namespace zk0::spec_fields {

std::string join_lines(const std::vector<std::string>& lines);

// Reads one YAML mapping, records every key it is asked for, and reports what it was not asked
// for as unknown fields. Problems are collected, not thrown, so a user sees all of them at once.
class Fields {
 public:
  Fields(const YAML::Node& node, std::string path, std::vector<std::string>& problems)
      : node_(node), path_(std::move(path)), problems_(problems) {
    if (node_ && !node_.IsNull() && !node_.IsMap()) {
      problem(path_, "must be a mapping");
      valid_ = false;
    }
  }

  ~Fields() {
    if (!valid_ || !node_ || node_.IsNull()) return;
    for (const auto& kv : node_) {
      // A key that is itself a mapping or a list (YAML allows it) is no field name.
      if (!kv.first.IsScalar()) {
        problem(path_, "field names must be plain strings");
        continue;
      }
      const std::string& key = kv.first.Scalar();
      if (!asked_.count(key)) problem(path_ + "." + key, "unknown field");
    }
  }

  std::string path(const std::string& key) const { return path_ + "." + key; }
  bool has(const std::string& key) {
    asked_.insert(key);
    return valid_ && node_ && node_[key] && !node_[key].IsNull();
  }
  YAML::Node node(const std::string& key) {
    asked_.insert(key);
    return valid_ && node_ ? node_[key] : YAML::Node();
  }

  template <typename T>
  void get(const std::string& key, T& out, bool required = false) {
    if (!has(key)) {
      if (required) problem(path(key), "is required");
      return;
    }
    const YAML::Node n = node_[key];
    if (!n.IsScalar()) {
      problem(path(key), "must be a scalar");
      return;
    }
    try {
      out = n.as<T>();
    } catch (const YAML::Exception&) {
      problem(path(key), "cannot read '" + n.Scalar() + "' as " + type_name<T>());
    }
  }

  template <typename T>
  void get_list(const std::string& key, std::vector<T>& out) {
    if (!has(key)) return;
    const YAML::Node n = node_[key];
    if (!n.IsSequence()) {
      problem(path(key), "must be a list");
      return;
    }
    out.clear();
    for (size_t i = 0; i < n.size(); ++i) {
      try {
        out.push_back(n[i].as<T>());
      } catch (const YAML::Exception&) {
        problem(path(key) + "[" + std::to_string(i) + "]", std::string("must be ") + type_name<T>());
      }
    }
  }

  template <typename E>
  void get_enum(const std::string& key, E& out, const std::map<std::string, E>& names) {
    std::string s;
    get(key, s);
    if (s.empty()) return;
    auto it = names.find(s);
    if (it != names.end()) {
      out = it->second;
      return;
    }
    std::string allowed;
    for (const auto& [n, _] : names) allowed += (allowed.empty() ? "" : ", ") + n;
    problem(path(key), "must be one of " + allowed + " (got '" + s + "')");
  }

  void problem(const std::string& where, const std::string& what) { problems_.push_back(where + ": " + what); }

 private:
  template <typename T>
  static const char* type_name() {
    if (std::is_same<T, bool>::value) return "a boolean";
    if (std::is_integral<T>::value) return "an integer";
    if (std::is_floating_point<T>::value) return "a number";
    return "a string";
  }

  YAML::Node node_;
  std::string path_;
  std::vector<std::string>& problems_;
  std::set<std::string> asked_;
  bool valid_ = true;
};

// Kubernetes-style byte quantity: 4194304, 4Mi, 512Ki, 1Gi.
bool parse_bytes(const std::string& s, uint64_t& out);
void require(bool ok, Fields& f, const std::string& key, const std::string& why);
DatasetSpec read_dataset(const YAML::Node& node, const std::string& path, std::vector<std::string>& problems);
// by, alpha and seed of an episode partition (spec.partition and a dataset's own partition).
void read_split_rule(Fields& f, EpisodePartition& p);
// Kubernetes resource quantity in its common forms: 512Mi, 32Gi, 1.5G, 1000000.
bool valid_quantity(const std::string& q);
ResourcesSpec read_resources(Fields& parent, bool gpu_allowed, std::vector<std::string>& problems);
PodPlacementSpec read_placement(Fields& parent, std::vector<std::string>& problems);
// A DNS-1123 label of at most 40 characters: names become parts of pod names on a cluster.
bool valid_name(const std::string& n);
// HOST:PORT with a port in 1-65535.
bool valid_host_port(const std::string& s);
// The document in `text`; throws SpecError naming YAML's complaint.
YAML::Node load_yaml(const std::string& text);
// The envelope of a zk0 object: apiVersion zk0.io/v1alpha1, `kind`, metadata (name, namespace;
// what Kubernetes adds to objects it returns is accepted) and status (the operator's). Returns
// the spec's node; throws SpecError with the problems so far when there is none.
YAML::Node read_envelope(Fields& top, const std::string& kind, std::string& name, std::string& namespace_,
                         std::vector<std::string>& problems);

template <typename E>
std::map<std::string, E> names_of(std::initializer_list<E> values) {
  std::map<std::string, E> m;
  for (E v : values) m[to_string(v)] = v;
  return m;
}


}  // namespace zk0::spec_fields
