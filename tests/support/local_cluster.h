#pragma once
// The real single-node cluster of tests/kube/cluster.sh (control plane, containerd, a kubelet,
// kube-proxy, CoreDNS, zk0's images imported) for tests that run pods: up in the constructor,
// down, with everything it added to the host, in the destructor. Needs root.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "operator/kube/client.h"

namespace zk0::test {

class LocalCluster {
 public:
  explicit LocalCluster(const std::string& dir);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  const std::string& dir() const { return dir_; }
  const std::string& kubeconfig() const { return kubeconfig_; }
  std::string tool(const std::string& name) const { return tools_ + "/" + name; }
  kube::KubeClient& api() { return *api_; }

  // kubectl / helm with the admin kubeconfig; the exit code, output in *out.
  int kubectl(const std::string& args, std::string* out = nullptr) const;
  int helm(const std::string& args, std::string* out = nullptr) const;
  // examples/k8s/provision.sh with this cluster's kubectl and kubeconfig and build/bin/zk0.
  int provision(const std::string& args, std::string* out = nullptr) const;
  // The object at an API path, or null when it does not exist.
  nlohmann::json get(const std::string& path);
  // What to print when a test fails: nodes, pods, events, recent component logs.
  std::string describe(const std::string& ns);

 private:
  std::string dir_, tools_, kubeconfig_;
  std::unique_ptr<kube::KubeClient> api_;
};

}  // namespace zk0::test
