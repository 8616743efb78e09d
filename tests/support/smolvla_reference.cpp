#include "support/smolvla_reference.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <set>

#include "core/policy/policy.h"
#include "core/tensor/safetensors.h"
#include "support/test_support.h"

namespace zk0::test {

namespace {
const std::string kPython = ZK0_PARITY_PYTHON;
const std::string kScript = std::string(ZK0_SOURCE_DIR) + "/tests/parity/smolvla_reference.py";
}  // namespace

std::string reference(const std::string& args) { return run_command(kPython + " " + kScript + " " + args); }

std::map<std::string, at::Tensor> load(const std::string& file) {
  std::map<std::string, at::Tensor> out;
  for (const auto& t : read_safetensors(file).tensors) out[t.name] = to_aten(t);
  return out;
}

std::map<std::string, at::Tensor> ours(const std::string& model, const std::string& inputs, const std::string& out) {
  const char* device = std::getenv("ZK0_PARITY_DEVICE");
  run_command(bin("zk0") + " policy run --gradients --pretrained " + model + " --inputs " + inputs + " --output " + out +
              " --device " + (device && *device ? device : "cpu"));
  return load(out);
}

void expect_same(const std::map<std::string, at::Tensor>& expected, const std::map<std::string, at::Tensor>& actual,
                 const std::string& what) {
  ASSERT_GT(expected.size(), 10u);
  const auto gradients = [](const std::map<std::string, at::Tensor>& m) {
    std::set<std::string> names;
    for (const auto& [name, t] : m)
      if (name.rfind("grad.", 0) == 0) names.insert(name);
    return names;
  };
  EXPECT_EQ(gradients(actual), gradients(expected)) << what << ": the trainable parameters differ";
  for (const auto& [name, e] : expected) {
    auto it = actual.find(name);
    ASSERT_NE(it, actual.end()) << what << ": zk0 did not write " << name;
    const at::Tensor a = it->second;
    ASSERT_EQ(a.sizes(), e.sizes()) << what << ": " << name;
    if (e.scalar_type() == at::kBool) {
      EXPECT_TRUE(a.to(at::kBool).equal(e)) << what << ": " << name;
      continue;
    }
    const double scale = e.abs().max().item<double>();
    const double diff = (a.to(at::kDouble) - e.to(at::kDouble)).abs().max().item<double>();
    EXPECT_LE(diff, 1e-4 * scale + 1e-7) << what << ": " << name << " differs by " << diff << " (largest |value| "
                                         << scale << ")";
  }
}

}  // namespace zk0::test
