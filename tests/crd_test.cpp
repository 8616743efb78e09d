// The FederationRun and FederationMembership CRDs (crds/) against the C++ spec types (core/spec): every field the C++ type
// writes exists in the CRD's schema with the same type, every field of the schema is one the C++
// type reads and writes, and the enums agree. The two are written by hand; this keeps them one.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <functional>
#include <set>

#include "core/spec/federation_spec.h"
#include "core/spec/membership_spec.h"
#include "core/util/yaml_json.h"
#include "support/maximal_specs.h"

using namespace zk0;
using zk0::test::kMaximalSpecs;
using nlohmann::json;

namespace {

json crd_spec_schema() {
  const json crd = yaml_to_json(YAML::LoadFile(std::string(ZK0_SOURCE_DIR) + "/crds/zk0.io_federationruns.yaml"));
  return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
}

bool opaque(const json& schema) { return schema.value("x-kubernetes-preserve-unknown-fields", false); }

// Every path (a.b[].c) of a value, and whether its JSON type fits the schema there.
void check_value(const json& value, const json& schema, const std::string& path, std::set<std::string>& seen) {
  seen.insert(path);
  if (opaque(schema)) return;
  const std::string type = schema.value("type", schema.value("x-kubernetes-int-or-string", false) ? "int-or-string" : "");
  if (value.is_object()) {
    ASSERT_EQ(type, "object") << path;
    for (auto it = value.begin(); it != value.end(); ++it) {
      const std::string child = path + "." + it.key();
      if (schema.contains("additionalProperties")) {
        check_value(it.value(), schema["additionalProperties"], path + ".*", seen);
        continue;
      }
      ASSERT_TRUE(schema.value("properties", json::object()).contains(it.key())) << child << " is written by C++ but not in the CRD";
      check_value(it.value(), schema["properties"][it.key()], child, seen);
    }
  } else if (value.is_array()) {
    ASSERT_EQ(type, "array") << path;
    for (const auto& v : value) check_value(v, schema["items"], path + "[]", seen);
  } else if (value.is_boolean()) {
    EXPECT_EQ(type, "boolean") << path;
  } else if (value.is_number_integer()) {
    EXPECT_TRUE(type == "integer" || type == "number" || type == "int-or-string") << path << " is " << type;
  } else if (value.is_number()) {
    EXPECT_EQ(type, "number") << path;
  } else if (value.is_string()) {
    EXPECT_TRUE(type == "string" || type == "int-or-string") << path << " is " << type;
    if (schema.contains("enum")) {
      bool listed = false;
      for (const auto& e : schema["enum"]) listed = listed || e == value;
      EXPECT_TRUE(listed) << path << ": C++ writes '" << value.get<std::string>() << "', the CRD does not list it";
    }
  }
}

void schema_paths(const json& schema, const std::string& path, std::set<std::string>& out) {
  out.insert(path);
  if (opaque(schema)) return;
  if (schema.contains("additionalProperties")) schema_paths(schema["additionalProperties"], path + ".*", out);
  const json properties = schema.value("properties", json::object());
  for (auto it = properties.begin(); it != properties.end(); ++it) schema_paths(it.value(), path + "." + it.key(), out);
  if (schema.contains("items")) schema_paths(schema["items"], path + "[]", out);
}

// The evaluation dataset in the forms the specs above leave out: the first of evaluation.sets,
// and inline (evaluation.dataset).
std::vector<std::string> with_evaluation_dataset(const std::string& dataset) {
  std::string in_set = kMaximalSpecs[1];
  const std::string from = "{repoId: owner/eval, revision: main, episodes: [3]}";
  in_set.replace(in_set.find(from), from.size(), dataset);
  std::string inline_form = kMaximalSpecs[1];
  const size_t begin = inline_form.find("  evaluation:\n"), end = inline_form.find("  strategy:");
  inline_form.replace(begin, end - begin, "  evaluation: {dataset: " + dataset + "}\n");
  return {in_set, inline_form};
}

}  // namespace

TEST(Crd, EveryFieldTheSpecWritesIsInTheSchemaAndEveryFieldOfTheSchemaIsWritten) {
  const json schema = crd_spec_schema();
  std::set<std::string> written;
  std::vector<std::string> specs(std::begin(kMaximalSpecs), std::end(kMaximalSpecs));
  for (const char* dataset : {"{volumeClaim: {claimName: eval, subPath: e}}",
                              "{path: /e, partition: {clients: 3, index: 2, by: dirichlet, alpha: 0.5, seed: 4}}",
                              "{synthetic: {task: t, episodes: 3, episodeLength: 10, seed: 1}}", "{repoId: owner/eval, revision: main, episodes: [3]}"})
    for (const auto& spec : with_evaluation_dataset(dataset)) specs.push_back(spec);
  // spec.partition is shorthand: the resolved spec writes the clients it makes (each dataset with
  // its partition), never the shorthand itself, so its own fields are checked by reading them.
  const std::string partitioned = std::string(kMaximalSpecs[1]) +
                                  "  partition: {clients: 2, namePrefix: p, by: dirichlet, alpha: 2, seed: 1, resources: {cpu: 1}, "
                                  "pod: {nodeSelector: {a: b}}, dataset: {path: /p}}\n  simulation: {concurrency: 2}\n";
  specs.push_back(partitioned);
  for (const auto& text : specs) {
    const json resolved = yaml_to_json(YAML::Load(to_yaml(parse_spec(text))));
    check_value(resolved["spec"], schema, "spec", written);
  }
  const FederationSpec expanded = parse_spec(partitioned);
  ASSERT_GE(expanded.clients.size(), 2u);
  EXPECT_EQ(expanded.clients.back().name, "p-001");
  EXPECT_EQ(expanded.clients.back().dataset.partition->alpha, 2);
  EXPECT_EQ(expanded.clients.back().pod.node_selector["a"], "b");
  std::set<std::string> declared;
  schema_paths(schema, "spec", declared);
  for (const auto& path : declared) {
    if (path.rfind("spec.partition", 0) == 0) continue;
    EXPECT_TRUE(written.count(path)) << path << " is in the CRD but the C++ spec never writes it";
  }
}

TEST(Crd, EnumsListExactlyTheValuesTheSpecAccepts) {
  const json schema = crd_spec_schema()["properties"];
  const auto values = [](const json& s) {
    std::set<std::string> v;
    for (const auto& e : s["enum"]) v.insert(e.get<std::string>());
    return v;
  };
  using S = std::set<std::string>;
  EXPECT_EQ(values(schema["evaluation"]["properties"]["mode"]), (S{to_string(EvalMode::Quick), to_string(EvalMode::Full)}));
  EXPECT_EQ(values(schema["training"]["properties"]["precision"]), (S{to_string(Precision::FP32), to_string(Precision::BF16)}));
  EXPECT_EQ(values(schema["training"]["properties"]["optimizer"]["properties"]["state"]),
            (S{to_string(OptimizerState::Reset), to_string(OptimizerState::Keep)}));
  EXPECT_EQ(values(schema["training"]["properties"]["lrSchedule"]["properties"]["type"]),
            (S{to_string(LrScheduleType::Constant), to_string(LrScheduleType::Cosine)}));
  EXPECT_EQ(values(schema["strategy"]["properties"]["type"]), (S{to_string(StrategyType::FedAvg), to_string(StrategyType::FedProx)}));
  EXPECT_EQ(values(schema["strategy"]["properties"]["muSchedule"]["properties"]["type"]),
            (S{to_string(MuScheduleType::Constant), to_string(MuScheduleType::Step), to_string(MuScheduleType::Adaptive)}));
  EXPECT_EQ(values(schema["strategy"]["properties"]["privacy"]["properties"]["clipOn"]),
            (S{to_string(ClipLocation::Server), to_string(ClipLocation::Worker)}));
  EXPECT_EQ(values(schema["transport"]["properties"]["expose"]["properties"]["type"]),
            (S{to_string(ExposeType::kNodePort), to_string(ExposeType::kLoadBalancer)}));
  // Every policy type the CRD lists parses, and one it does not list is refused by C++ too.
  for (const auto& type : values(schema["policy"]["properties"]["type"])) {
    std::string text = kMaximalSpecs[1];
    text += "  policy: {type: " + type + "}\n";
    EXPECT_NO_THROW(parse_spec(text)) << type;
  }
  EXPECT_THROW(parse_spec(std::string(kMaximalSpecs[1]) + "  policy: {type: transformer}\n"), SpecError);
}

TEST(Crd, RequiredFieldsAreRequiredByBoth) {
  const json schema = crd_spec_schema();
  for (const auto& field : schema["required"]) {
    YAML::Node doc = YAML::Load(kMaximalSpecs[1]);
    doc["spec"].remove(field.get<std::string>());
    YAML::Emitter out;
    out << doc;
    EXPECT_THROW(parse_spec(out.c_str()), SpecError) << "spec." << field << " is required by the CRD but not by C++";
  }
}

TEST(Crd, PodOverridesAllowExactlyWhatTheSpecAllows) {
  const json overrides = crd_spec_schema()["properties"]["clients"]["items"]["properties"]["pod"]["properties"]["overrides"];
  const auto keys = [](const json& properties) {
    std::set<std::string> out;
    for (auto it = properties.begin(); it != properties.end(); ++it) out.insert(it.key());
    return out;
  };
  const auto listed = [](const char* const* names) {
    std::set<std::string> out;
    for (; *names; ++names) out.insert(*names);
    return out;
  };
  EXPECT_EQ(keys(overrides["properties"]), (std::set<std::string>{"metadata", "spec"}));
  EXPECT_EQ(keys(overrides["properties"]["spec"]["properties"]), listed(kPodOverrideSpecFields));
  EXPECT_EQ(keys(overrides["properties"]["metadata"]["properties"]), listed(kPodOverrideMetadataFields));
  for (const auto* part : {&overrides, &overrides["properties"]["spec"], &overrides["properties"]["metadata"]})
    EXPECT_FALSE(opaque(*part)) << "an opaque level would let any field through";
}

// FederationMembership: two documents between them set every field its schema has (a dataset is
// a path or a claim), and the C++ parser reads both; a field the schema lacks is refused by both.
TEST(Crd, EveryFieldOfTheMembershipSchemaIsReadByItsParser) {
  const json crd = yaml_to_json(YAML::LoadFile(std::string(ZK0_SOURCE_DIR) + "/crds/zk0.io_federationmemberships.yaml"));
  const json schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
  const std::string head = "apiVersion: zk0.io/v1alpha1\nkind: FederationMembership\nmetadata: {name: alice, namespace: owner}\nspec:\n"
                           "  endpoint: 203.0.113.7:30551\n  tokenSecret: {name: alice-token, key: token}\n"
                           "  resources: {gpu: 1, cpu: 4, memory: 16Gi}\n"
                           "  pod:\n    nodeSelector: {zk0.io/robot-owner: alice}\n"
                           "    tolerations: [{key: nvidia.com/gpu, operator: Exists, value: x, effect: NoSchedule, tolerationSeconds: 5}]\n"
                           "    affinity: {nodeAffinity: {}}\n"
                           "    overrides: {metadata: {labels: {team: a}, annotations: {note: b}}, spec: {priorityClassName: high}}\n"
                           "  storage: {size: 2Gi, storageClassName: local}\n";
  std::set<std::string> written;
  for (const std::string dataset : {"  dataset: {path: /srv/lerobot/so101}\n", "  dataset: {volumeClaim: {claimName: data, subPath: so101}}\n"}) {
    const std::string text = head + dataset;
    const MembershipSpec m = parse_membership(text);
    EXPECT_EQ(m.endpoint, "203.0.113.7:30551");
    check_value(yaml_to_json(YAML::Load(text))["spec"], schema, "spec", written);
  }
  std::set<std::string> declared;
  schema_paths(schema, "spec", declared);
  for (const auto& path : declared) {
    if (path.find("spec.pod.overrides.") == 0 || path.find("spec.pod.affinity.") == 0) continue;  // passed through as Kubernetes types
    EXPECT_TRUE(written.count(path)) << path << " is in the membership CRD but no test document sets it";
  }
  EXPECT_THROW(parse_membership(head + "  dataset: {path: /d}\n  gpuModel: h100\n"), SpecError);
  EXPECT_THROW(parse_membership(head + "  dataset: {repoId: lerobot/svla_so100_stacking}\n"), SpecError);
}
