#include "support/local_cluster.h"

#include <stdexcept>
#include <vector>

#include "support/test_support.h"

namespace zk0::test {

namespace {

const std::string kScript = std::string(ZK0_SOURCE_DIR) + "/tests/kube/cluster.sh";

std::string last_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  const auto at = text.rfind('\n');
  return at == std::string::npos ? text : text.substr(at + 1);
}

}  // namespace

LocalCluster::LocalCluster(const std::string& dir) : dir_(dir) {
  tools_ = last_line(run_command(std::string(ZK0_SOURCE_DIR) + "/tests/kube/build-tools.sh 2>/dev/null"));
  int code = 0;
  const std::string out = run_command(kScript + " up " + dir_, &code);
  if (code != 0) {
    run_command(kScript + " down " + dir_, &code);
    throw std::runtime_error("tests/kube/cluster.sh up failed:\n" + out);
  }
  const std::string line = last_line(out);
  if (line.rfind("KUBECONFIG=", 0) != 0) throw std::runtime_error("tests/kube/cluster.sh up printed no KUBECONFIG:\n" + out);
  kubeconfig_ = line.substr(11);
  api_ = std::make_unique<kube::KubeClient>(kube::KubeConfig::from_kubeconfig(kubeconfig_));
}

LocalCluster::~LocalCluster() {
  int code = 0;
  run_command(kScript + " down " + dir_, &code);
}

int LocalCluster::kubectl(const std::string& args, std::string* out) const {
  int code = 0;
  const std::string text = run_command(tool("kubectl") + " --kubeconfig " + kubeconfig_ + " " + args, &code);
  if (out) *out = text;
  return code;
}

int LocalCluster::helm(const std::string& args, std::string* out) const {
  int code = 0;
  const std::string text = run_command(tool("helm") + " --kubeconfig " + kubeconfig_ + " " + args, &code);
  if (out) *out = text;
  return code;
}

int LocalCluster::provision(const std::string& args, std::string* out) const {
  int code = 0;
  const std::string text = run_command("KUBECONFIG=" + kubeconfig_ + " KUBECTL=" + tool("kubectl") + " ZK0=" + bin("zk0") + " " +
                                           std::string(ZK0_SOURCE_DIR) + "/examples/k8s/provision.sh " + args,
                                       &code);
  if (out) *out = text;
  return code;
}

nlohmann::json LocalCluster::get(const std::string& path) {
  try {
    return api_->get(path);
  } catch (const kube::ApiError& e) {
    if (e.not_found()) return nullptr;
    throw;
  }
}

std::string LocalCluster::describe(const std::string& ns) {
  // The events and the runtime's errors first: a failure's cause is there, and CI shows the
  // beginning of a long report.
  std::string text, part;
  int code = 0;
  const auto add = [&](const std::string& args) {
    kubectl(args, &part);
    text += "$ kubectl " + args + "\n" + part + "\n";
  };
  add("get events -A --sort-by=.lastTimestamp");
  add("get pods -A -o wide");
  text += "$ containerd's errors\n" + run_command("grep 'level=error' " + dir_ + "/logs/containerd.log | tail -n 15", &code) + "\n";
  text += "$ kubelet's log\n" + run_command("tail -n 30 " + dir_ + "/logs/kubelet.log", &code) + "\n";
  add("get nodes -o wide");
  add("-n " + ns + " get fedrun -o yaml");
  return text;
}

}  // namespace zk0::test
