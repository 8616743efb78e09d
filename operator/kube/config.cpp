#include "operator/kube/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "core/util/base64.h"
#include "core/util/fs.h"

namespace zk0::kube {

namespace {

const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// A kubeconfig value given inline (`...-data`, base64) or as a file relative to the kubeconfig.
std::string data_or_file(const YAML::Node& n, const std::string& key, const std::filesystem::path& base) {
  if (n[key + "-data"]) {
    try {
      return base64_decode(n[key + "-data"].as<std::string>(), Base64::kStandard);
    } catch (const std::invalid_argument&) {
      throw std::runtime_error("kubeconfig: " + key + "-data is not base64");
    }
  }
  if (n[key]) {
    std::filesystem::path p = n[key].as<std::string>();
    if (p.is_relative()) p = base / p;
    return read_file(p.string());
  }
  return "";
}

YAML::Node named(const YAML::Node& list, const std::string& name, const std::string& what, const std::string& path) {
  for (const auto& item : list)
    if (item["name"] && item["name"].as<std::string>() == name) return item[what];
  throw std::runtime_error(path + ": no " + what + " named '" + name + "'");
}

}  // namespace

std::string read_token(const std::string& path) {
  std::string token = read_file(path);
  while (!token.empty() && (token.back() == '\n' || token.back() == ' ')) token.pop_back();
  return token;
}

KubeConfig KubeConfig::in_cluster() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !port) throw std::runtime_error("not in a cluster: KUBERNETES_SERVICE_HOST/PORT unset; pass --kubeconfig");
  KubeConfig c;
  const std::string h = host;
  c.server = "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
  const std::string dir = kServiceAccountDir;
  c.token_file = dir + "/token";
  c.token = read_token(c.token_file);
  c.ca_pem = read_file(dir + "/ca.crt");
  c.namespace_ = read_file(dir + "/namespace");
  return c;
}

KubeConfig KubeConfig::from_kubeconfig(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error("kubeconfig " + path + ": " + e.what());
  }
  const auto base = std::filesystem::path(path).parent_path();
  const std::string context_name = root["current-context"] ? root["current-context"].as<std::string>() : "";
  if (context_name.empty()) throw std::runtime_error("kubeconfig " + path + ": no current-context");
  const YAML::Node context = named(root["contexts"], context_name, "context", path);
  const YAML::Node cluster = named(root["clusters"], context["cluster"].as<std::string>(), "cluster", path);
  KubeConfig c;
  c.server = cluster["server"].as<std::string>();
  c.ca_pem = data_or_file(cluster, "certificate-authority", base);
  if (context["user"]) {
    const YAML::Node user = named(root["users"], context["user"].as<std::string>(), "user", path);
    if (user["token"]) c.token = user["token"].as<std::string>();
    c.client_cert_pem = data_or_file(user, "client-certificate", base);
    c.client_key_pem = data_or_file(user, "client-key", base);
  }
  c.namespace_ = context["namespace"] ? context["namespace"].as<std::string>() : "default";
  return c;
}

}  // namespace zk0::kube
