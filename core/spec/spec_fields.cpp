#include "core/spec/spec_fields.h"

#include <algorithm>
#include <cctype>

#include "core/util/yaml_json.h"

namespace zk0::spec_fields {

std::string join_lines(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += (s.empty() ? "" : "\n") + l;
  return s;
}

// Kubernetes-style quantity: 4194304, 4Mi, 512Ki, 1Gi.
bool parse_bytes(const std::string& s, uint64_t& out) {
  static const std::map<std::string, uint64_t> suffixes{{"", 1}, {"Ki", 1ull << 10}, {"Mi", 1ull << 20}, {"Gi", 1ull << 30}};
  size_t end = 0;
  while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) ++end;
  if (end == 0) return false;
  auto it = suffixes.find(s.substr(end));
  if (it == suffixes.end()) return false;
  out = std::stoull(s.substr(0, end)) * it->second;
  return true;
}

void require(bool ok, Fields& f, const std::string& key, const std::string& why) {
  if (!ok) f.problem(f.path(key), why);
}

void read_split_rule(Fields& f, EpisodePartition& p) {
  f.get_enum("by", p.by, names_of({PartitionScheme::IID, PartitionScheme::Task, PartitionScheme::Dirichlet}));
  f.get("alpha", p.alpha);
  f.get("seed", p.seed);
  if (f.has("alpha") && p.by != PartitionScheme::Dirichlet) f.problem(f.path("alpha"), "only applies with by: dirichlet");
  require(p.alpha > 0, f, "alpha", "must be greater than 0 (got " + std::to_string(p.alpha) + ")");
}

DatasetSpec read_dataset(const YAML::Node& node, const std::string& path, std::vector<std::string>& problems) {
  DatasetSpec d;
  if (!node || node.IsNull()) {
    problems.push_back(path + ": is required");
    return d;
  }
  Fields f(node, path, problems);
  f.get("path", d.path);
  if (f.has("volumeClaim")) {
    VolumeClaimSource v;
    Fields vf(f.node("volumeClaim"), f.path("volumeClaim"), problems);
    vf.get("claimName", v.claim_name, true);
    vf.get("subPath", v.sub_path);
    if (!v.sub_path.empty() && (v.sub_path.front() == '/' || v.sub_path.find("..") != std::string::npos))
      vf.problem(vf.path("subPath"), "must be a relative path inside the volume");
    d.volume_claim = v;
  }
  f.get("repoId", d.repo_id);
  f.get("revision", d.revision);
  f.get_list("episodes", d.episodes);
  if (f.has("synthetic")) {
    SyntheticDatasetSpec s;
    Fields sf(f.node("synthetic"), f.path("synthetic"), problems);
    sf.get("task", s.task, true);
    sf.get("episodes", s.episodes);
    sf.get("episodeLength", s.episode_length);
    sf.get("seed", s.seed);
    require(s.episodes >= 1, sf, "episodes", "must be at least 1");
    require(s.episode_length >= 2, sf, "episodeLength", "must be at least 2");
    d.synthetic = s;
  }
  if (f.has("partition")) {
    EpisodePartition p;
    Fields pf(f.node("partition"), f.path("partition"), problems);
    pf.get("clients", p.clients, true);
    pf.get("index", p.index, true);
    read_split_rule(pf, p);
    require(p.clients >= 1, pf, "clients", "must be at least 1");
    require(p.index >= 0 && p.index < p.clients, pf, "index",
            "must be from 0 to clients - 1 (got " + std::to_string(p.index) + " of " + std::to_string(p.clients) + ")");
    if (d.synthetic) pf.problem(pf.path("clients"), "synthetic datasets are generated per client, not split: give each its own seed");
    d.partition = p;
  }
  const int sources = !d.path.empty() + d.volume_claim.has_value() + !d.repo_id.empty() + d.synthetic.has_value();
  if (sources == 0) problems.push_back(path + ": one of path, volumeClaim, repoId or synthetic is required");
  if (sources > 1) problems.push_back(path + ": set only one of path, volumeClaim, repoId or synthetic");
  if (!d.revision.empty() && d.repo_id.empty()) f.problem(f.path("revision"), "only applies with repoId");
  if (!d.repo_id.empty() && d.repo_id.find('/') == std::string::npos)
    f.problem(f.path("repoId"), "must look like owner/name (got '" + d.repo_id + "')");
  if (!d.repo_id.empty() && d.revision.empty()) d.revision = "main";
  std::set<int64_t> seen;
  for (size_t i = 0; i < d.episodes.size(); ++i) {
    if (d.episodes[i] < 0) problems.push_back(path + ".episodes[" + std::to_string(i) + "]: must not be negative");
    if (!seen.insert(d.episodes[i]).second)
      problems.push_back(path + ".episodes[" + std::to_string(i) + "]: episode " + std::to_string(d.episodes[i]) + " is listed twice");
  }
  return d;
}

// Kubernetes resource quantity in its common forms: 512Mi, 32Gi, 1.5G, 1000000.
bool valid_quantity(const std::string& q) {
  size_t i = 0;
  while (i < q.size() && (std::isdigit(static_cast<unsigned char>(q[i])) || q[i] == '.')) ++i;
  if (i == 0 || std::count(q.begin(), q.begin() + i, '.') > 1) return false;
  static const std::set<std::string> suffixes{"", "Ki", "Mi", "Gi", "Ti", "Pi", "k", "M", "G", "T", "P"};
  return suffixes.count(q.substr(i)) > 0;
}

ResourcesSpec read_resources(Fields& parent, bool gpu_allowed, std::vector<std::string>& problems) {
  ResourcesSpec r;
  if (!parent.has("resources")) return r;
  Fields f(parent.node("resources"), parent.path("resources"), problems);
  f.get("cpu", r.cpu);
  require(r.cpu >= 0, f, "cpu", "must not be negative");
  if (gpu_allowed) {
    f.get("gpu", r.gpu);
    require(r.gpu >= 0, f, "gpu", "must not be negative");
  }
  f.get("memory", r.memory);
  if (!r.memory.empty() && !valid_quantity(r.memory))
    f.problem(f.path("memory"), "must be a quantity such as 32Gi (got '" + r.memory + "')");
  return r;
}

PodPlacementSpec read_placement(Fields& parent, std::vector<std::string>& problems) {
  PodPlacementSpec p;
  if (!parent.has("pod")) return p;
  Fields f(parent.node("pod"), parent.path("pod"), problems);
  auto read = [&](const char* key, nlohmann::json& out, bool list) {
    if (!f.has(key)) return;
    const YAML::Node n = f.node(key);
    if (list ? !n.IsSequence() : !n.IsMap()) {
      f.problem(f.path(key), list ? "must be a list" : "must be a mapping");
      return;
    }
    out = yaml_to_json(n);
  };
  read("nodeSelector", p.node_selector, false);
  read("tolerations", p.tolerations, true);
  read("affinity", p.affinity, false);
  read("overrides", p.overrides, false);
  // Anything else (containers, volumes, host namespaces, the service account) would let a run's
  // author run arbitrary pods on the cluster's nodes.
  const auto allowed = [](const char* const* names, const std::string& key) {
    for (; *names; ++names)
      if (key == *names) return true;
    return false;
  };
  for (auto it = p.overrides.begin(); it != p.overrides.end(); ++it) {
    const std::string path = f.path("overrides") + "." + it.key();
    const char* const* names = it.key() == "metadata" ? kPodOverrideMetadataFields
                               : it.key() == "spec"   ? kPodOverrideSpecFields
                                                      : nullptr;
    if (!names) {
      f.problem(path, "overrides may set only metadata and spec");
      continue;
    }
    if (!it.value().is_object()) {
      f.problem(path, "must be a mapping");
      continue;
    }
    for (auto field = it.value().begin(); field != it.value().end(); ++field)
      if (!allowed(names, field.key()))
        f.problem(path + "." + field.key(), "may not be overridden (allowed: " + [&] {
          std::string list;
          for (const char* const* n = names; *n; ++n) list += (list.empty() ? "" : ", ") + std::string(*n);
          return list;
        }() + ")");
    if (it.key() == "metadata")
      for (const char* map : {"labels", "annotations"}) {
        if (!it.value().contains(map)) continue;
        const auto& m = it.value()[map];
        if (!m.is_object()) {
          f.problem(path + "." + map, "must be a mapping");
          continue;
        }
        for (auto kv = m.begin(); kv != m.end(); ++kv) {
          if (!kv.value().is_string()) f.problem(path + "." + map + "." + kv.key(), "must be a string");
          // zk0's own keys select pods for NetworkPolicies and the operator's bookkeeping.
          if (kv.key().find("zk0.io/") != std::string::npos || kv.key().rfind("app.kubernetes.io/", 0) == 0)
            f.problem(path + "." + map + "." + kv.key(), "is set by the operator");
        }
      }
  }
  for (auto it = p.node_selector.begin(); it != p.node_selector.end(); ++it)
    if (!it.value().is_string()) f.problem(f.path("nodeSelector") + "." + it.key(), "must be a string");
  for (size_t i = 0; i < p.tolerations.size(); ++i)
    if (!p.tolerations[i].is_object()) f.problem(f.path("tolerations") + "[" + std::to_string(i) + "]", "must be a mapping");
  return p;
}

bool valid_name(const std::string& n) {
  // A DNS-1123 label: the client name becomes part of a pod name on a cluster.
  if (n.empty() || n.size() > 40) return false;
  for (char c : n)
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-')) return false;
  return n.front() != '-' && n.back() != '-';
}

bool valid_host_port(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  const std::string port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
  const int p = std::stoi(port);
  return p >= 1 && p <= 65535;
}

YAML::Node load_yaml(const std::string& text) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw SpecError({std::string("yaml: ") + e.what()});
  }
}

YAML::Node read_envelope(Fields& top, const std::string& kind, std::string& name, std::string& namespace_,
                         std::vector<std::string>& problems) {
  std::string api_version, got_kind;
  top.get("apiVersion", api_version, true);
  top.get("kind", got_kind, true);
  if (!api_version.empty() && api_version != "zk0.io/v1alpha1")
    problems.push_back("apiVersion: must be zk0.io/v1alpha1 (got '" + api_version + "')");
  if (!got_kind.empty() && got_kind != kind) problems.push_back("kind: must be " + kind + " (got '" + got_kind + "')");
  {
    Fields meta(top.node("metadata"), "metadata", problems);
    meta.get("name", name, true);
    meta.get("namespace", namespace_);
    // Kubernetes sets these on objects it returns; accepting them lets a fetched object round-trip.
    for (const char* k : {"labels", "annotations", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"})
      meta.node(k);
    if (!name.empty() && !valid_name(name))
      problems.push_back("metadata.name: must be lower-case letters, digits and '-', at most 40 characters");
  }
  top.node("status");  // written by the operator, ignored here
  if (!top.has("spec")) {
    problems.push_back("spec: is required");
    throw SpecError(problems);
  }
  return top.node("spec");
}

}  // namespace zk0::spec_fields
