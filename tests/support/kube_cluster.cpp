#include "support/kube_cluster.h"

#include <fstream>
#include <stdexcept>
#include <thread>

#include "core/util/fs.h"

namespace zk0::test {

namespace {

void openssl(const std::string& args) { run_command("openssl " + args); }

std::string kubeconfig_text(int port, const std::string& dir, const std::string& cert, const std::string& key) {
  return "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:" + std::to_string(port) +
         "\n    certificate-authority: " + dir + "/ca.crt\nusers:\n- name: user\n  user:\n    client-certificate: " + cert +
         "\n    client-key: " + key + "\ncontexts:\n- name: test\n  context: {cluster: test, user: user, namespace: default}\n" +
         "current-context: test\n";
}

}  // namespace

KubeCluster::KubeCluster(const std::string& tag, const std::vector<std::string>& crds) : dir_(make_temp_dir(tag)) {
  std::string tools = run_command(std::string(ZK0_SOURCE_DIR) + "/tests/kube/build-tools.sh 2>/dev/null");
  while (!tools.empty() && (tools.back() == '\n' || tools.back() == ' ')) tools.pop_back();
  tools_ = tools.substr(tools.rfind('\n') == std::string::npos ? 0 : tools.rfind('\n') + 1);
  // PKI: the cluster CA signs the serving certificate and every client certificate.
  openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=zk0-test-cluster-ca -keyout " + dir_ + "/ca.key -out " + dir_ + "/ca.crt");
  std::ofstream(dir_ + "/serving.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
  openssl("req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout " + dir_ + "/serving.key -out " + dir_ + "/serving.csr");
  openssl("x509 -req -days 2 -in " + dir_ + "/serving.csr -CA " + dir_ + "/ca.crt -CAkey " + dir_ + "/ca.key -CAcreateserial -extfile " +
          dir_ + "/serving.ext -out " + dir_ + "/serving.crt");
  openssl("genrsa -out " + dir_ + "/sa.key 2048");
  openssl("rsa -in " + dir_ + "/sa.key -pubout -out " + dir_ + "/sa.pub");
  etcd_port_ = free_port();
  apiserver_port_ = free_port();
  admin_kubeconfig_ = kubeconfig_for("admin", {"system:masters"});

  const int peer_port = free_port();
  const std::string client_url = "http://127.0.0.1:" + std::to_string(etcd_port_);
  etcd_ = std::make_unique<Process>(
      std::vector<std::string>{tool("etcd"), "--data-dir", dir_ + "/etcd", "--listen-client-urls", client_url,
                               "--advertise-client-urls", client_url, "--listen-peer-urls", "http://127.0.0.1:" + std::to_string(peer_port),
                               "--initial-advertise-peer-urls", "http://127.0.0.1:" + std::to_string(peer_port), "--initial-cluster",
                               "default=http://127.0.0.1:" + std::to_string(peer_port), "--log-level", "warn",
                               "--quota-backend-bytes", "4294967296"},
      dir_ + "/etcd.log");
  start_apiserver();
  wait_ready();
  for (const auto& crd : crds) {
    std::string out;
    if (kubectl("apply --server-side -f " + crd, &out) != 0) throw std::runtime_error("CRD " + crd + " refused: " + out);
    const std::string name = run_command(tool("kubectl") + " --kubeconfig " + admin_kubeconfig_ + " get -f " + crd + " -o name");
    if (kubectl("wait --for=condition=Established --timeout=60s " + name, &out) != 0) throw std::runtime_error(out);
  }
  // The garbage collector deletes a run's children when the run goes (ownerReferences); the
  // PVC protection controller lets a deleted claim go once no pod uses it.
  controller_manager_ = std::make_unique<Process>(
      std::vector<std::string>{tool("kube-controller-manager"), "--kubeconfig", admin_kubeconfig_, "--controllers",
                               "garbagecollector,namespace,pvc-protection", "--leader-elect=false", "--secure-port=0",
                               "--use-service-account-credentials=false", "--concurrent-gc-syncs=5"},
      dir_ + "/controller-manager.log");
}

KubeCluster::~KubeCluster() {
  controller_manager_.reset();
  apiserver_.reset();
  etcd_.reset();
}

std::string KubeCluster::kubeconfig_for(const std::string& user, const std::vector<std::string>& groups) {
  std::string subject = "/CN=" + user;
  for (const auto& g : groups) subject += "/O=" + g;
  std::string safe = user;
  for (char& ch : safe)
    if (ch == ':') ch = '_';
  const std::string base = dir_ + "/" + safe;
  std::ofstream(dir_ + "/client.ext") << "extendedKeyUsage=clientAuth\n";
  openssl("req -newkey rsa:2048 -nodes -subj '" + subject + "' -keyout " + base + ".key -out " + base + ".csr");
  openssl("x509 -req -days 2 -in " + base + ".csr -CA " + dir_ + "/ca.crt -CAkey " + dir_ + "/ca.key -CAcreateserial -extfile " + dir_ +
          "/client.ext -out " + base + ".crt");
  const std::string path = base + ".kubeconfig";
  std::ofstream(path) << kubeconfig_text(apiserver_port_, dir_, base + ".crt", base + ".key");
  return path;
}

void KubeCluster::start_apiserver() {
  apiserver_ = std::make_unique<Process>(
      std::vector<std::string>{tool("kube-apiserver"),
                               "--etcd-servers=http://127.0.0.1:" + std::to_string(etcd_port_),
                               "--bind-address=127.0.0.1",
                               "--advertise-address=127.0.0.1",
                               "--secure-port=" + std::to_string(apiserver_port_),
                               "--cert-dir=" + dir_ + "/apiserver-certs",
                               "--tls-cert-file=" + dir_ + "/serving.crt",
                               "--tls-private-key-file=" + dir_ + "/serving.key",
                               "--client-ca-file=" + dir_ + "/ca.crt",
                               "--service-account-issuer=https://kubernetes.default.svc",
                               "--service-account-key-file=" + dir_ + "/sa.pub",
                               "--service-account-signing-key-file=" + dir_ + "/sa.key",
                               "--service-cluster-ip-range=10.96.0.0/16",
                               "--authorization-mode=RBAC",
                               // No controller creates the default ServiceAccount in namespaces here.
                               "--disable-admission-plugins=ServiceAccount",
                               "--enable-priority-and-fairness=false",
                               "--v=0"},
      dir_ + "/apiserver.log");
}

void KubeCluster::wait_ready() {
  const bool ready = wait_until(
      [&] {
        int code = 0;
        const std::string out = run_command(tool("kubectl") + " --kubeconfig " + admin_kubeconfig_ + " get --raw /readyz", &code);
        return code == 0 && out.find("ok") != std::string::npos;
      },
      std::chrono::seconds(120));
  if (!ready) throw std::runtime_error("kube-apiserver not ready:\n" + apiserver_log().substr(0, 4000));
}

int KubeCluster::kubectl(const std::string& args, std::string* out) const {
  int code = 0;
  const std::string text = run_command(tool("kubectl") + " --kubeconfig " + admin_kubeconfig_ + " " + args, &code);
  if (out) *out = text;
  return code;
}

void KubeCluster::restart_apiserver() {
  apiserver_.reset();  // SIGKILL
  start_apiserver();
  wait_ready();
}

}  // namespace zk0::test
