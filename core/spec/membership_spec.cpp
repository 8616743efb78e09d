#include "core/spec/membership_spec.h"

#include "core/spec/spec_fields.h"

namespace zk0 {

using namespace spec_fields;

MembershipSpec parse_membership(const std::string& yaml_text) {
  std::vector<std::string> problems;
  const YAML::Node root = load_yaml(yaml_text);
  MembershipSpec m;
  {  // Fields report unknown keys when they go out of scope, before the problems are thrown
    Fields top(root, "", problems);
    Fields s(read_envelope(top, "FederationMembership", m.name, m.namespace_, problems), "spec", problems);
    s.get("endpoint", m.endpoint, true);
    if (!m.endpoint.empty() && !valid_host_port(m.endpoint))
      s.problem(s.path("endpoint"), "must be HOST:PORT, the run's join endpoint (got '" + m.endpoint + "')");
    if (s.has("tokenSecret")) {
      Fields tf(s.node("tokenSecret"), s.path("tokenSecret"), problems);
      m.token_secret.key = "token";
      tf.get("name", m.token_secret.name, true);
      tf.get("key", m.token_secret.key);
    } else {
      s.problem(s.path("tokenSecret"), "is required (the Secret holding the join token the run's owner handed over)");
    }
    m.dataset = read_dataset(s.node("dataset"), s.path("dataset"), problems);
    // The data is the owner's own: on a disk of this cluster, never fetched or made up.
    if (!m.dataset.repo_id.empty() || m.dataset.synthetic)
      s.problem(s.path("dataset"), "must be a volumeClaim or a path: a membership trains on the owner's own data");
    if (!m.dataset.episodes.empty()) s.problem(s.path("dataset.episodes"), "does not apply: the worker trains on the whole dataset");
    m.resources = read_resources(s, true, problems);
    m.pod = read_placement(s, problems);
    if (s.has("storage")) {
      Fields sf(s.node("storage"), s.path("storage"), problems);
      sf.get("size", m.storage_size);
      sf.get("storageClassName", m.storage_class);
      if (!valid_quantity(m.storage_size)) sf.problem(sf.path("size"), "must be a quantity such as 1Gi (got '" + m.storage_size + "')");
    }
  }
  if (!problems.empty()) throw SpecError(problems);
  return m;
}

}  // namespace zk0
