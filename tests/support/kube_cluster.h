#pragma once
// A real Kubernetes control plane on loopback for the operator's tests and benchmark: etcd,
// kube-apiserver (RBAC on, client-certificate auth) and kube-controller-manager running only
// the garbage collector, built from their Go modules by tests/kube/build-tools.sh. No kubelet
// and no scheduler: tests play the kubelet by writing pod status.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/test_support.h"

namespace zk0::test {

class KubeCluster {
 public:
  // crds: CustomResourceDefinition files installed (and established) before the controller
  // manager starts, so that its garbage collector watches those kinds from its first sync
  // instead of discovering them at a resync half a minute later.
  KubeCluster(const std::string& tag, const std::vector<std::string>& crds);
  ~KubeCluster();

  const std::string& dir() const { return dir_; }
  std::string tool(const std::string& name) const { return tools_ + "/" + name; }
  const std::string& admin_kubeconfig() const { return admin_kubeconfig_; }
  // A kubeconfig authenticating as `user` (groups optional) with a certificate from the cluster
  // CA: "system:serviceaccount:NS:NAME" is how RBAC sees a service account.
  std::string kubeconfig_for(const std::string& user, const std::vector<std::string>& groups = {});

  // kubectl with the admin kubeconfig; returns the exit code, output in *out.
  int kubectl(const std::string& args, std::string* out = nullptr) const;
  void restart_apiserver();  // the same etcd: objects survive, watches break
  std::string apiserver_log() const { return apiserver_ ? apiserver_->log() : ""; }

 private:
  void start_apiserver();
  void wait_ready();

  std::string dir_, tools_, admin_kubeconfig_;
  int etcd_port_ = 0, apiserver_port_ = 0;
  std::unique_ptr<Process> etcd_, apiserver_, controller_manager_;
};

}  // namespace zk0::test
