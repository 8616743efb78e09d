#pragma once
// How the operator reaches the Kubernetes API: in a pod, the service account's token and CA;
// elsewhere, a kubeconfig file (current context). Client certificates, bearer tokens and
// embedded or file-referenced CA data are supported, which covers kind, kubeadm and the test
// harness's API server.
#include <string>

namespace zk0::kube {

struct KubeConfig {
  std::string server;  // https://host:port
  std::string ca_pem;  // empty = the system's trust store
  std::string token;
  // Where the token came from when the kubelet keeps it fresh (a pod's projected service-account
  // token, rotated before it expires): the client reads it again every minute, as client-go does.
  std::string token_file;
  std::string client_cert_pem;
  std::string client_key_pem;
  std::string namespace_;  // the context's (or the pod's) namespace

  static KubeConfig in_cluster();  // throws when not running in a pod
  static KubeConfig from_kubeconfig(const std::string& path);
};

// A token file's content without its trailing newline.
std::string read_token(const std::string& path);

}  // namespace zk0::kube
