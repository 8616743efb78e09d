#include "cli/local_runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "core/runtime/cpu_runtime.h"
#include "core/security/local_ca.h"
#include "core/spec/federation_spec.h"
#include "core/util/fs.h"

namespace zk0 {
namespace fs = std::filesystem;

namespace {

volatile std::sig_atomic_t interrupted = 0;
void on_signal(int) { interrupted = 1; }

struct Child {
  std::string name;
  pid_t pid = -1;
  std::string log;
  bool running = true;
  int exit_code = 0;
};

pid_t spawn(const std::vector<std::string>& argv, const std::string& log_path,
            const std::map<std::string, std::string>& env = {}) {
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    setpgid(0, 0);  // Ctrl-C reaches only us; we stop the children in order
    for (const auto& [key, value] : env) setenv(key.c_str(), value.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

bool reap(Child& c, bool block) {
  if (!c.running) return true;
  int status = 0;
  const pid_t r = waitpid(c.pid, &status, block ? 0 : WNOHANG);
  if (r != c.pid) return false;
  c.running = false;
  c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return true;
}

void stop_all(std::vector<Child>& children) {
  for (auto& c : children)
    if (c.running) kill(c.pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (auto& c : children) {
    while (!reap(c, false) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (c.running) {
      kill(c.pid, SIGKILL);
      reap(c, true);
    }
  }
}

std::string progress_line(const nlohmann::json& s) {
  std::ostringstream out;
  out << "round " << s.value("round", 0) << "/" << s.value("rounds", 0) << "  " << s.value("phase", "?");
  if (s.contains("last_server_eval_loss")) out << "  server_loss=" << s["last_server_eval_loss"].get<double>();
  out << "  ready=" << s.value("ready_clients", 0) << "  |";
  for (auto it = s["clients"].begin(); it != s["clients"].end(); ++it) {
    out << " " << it.key() << "=" << it.value().value("state", "?");
    if (it.value().contains("last_loss")) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "(%.4f)", it.value()["last_loss"].get<double>());
      out << buf;
    }
  }
  const auto& rejected = s["rejected_updates"];
  if (rejected.is_object() && !rejected.empty()) out << "  rejected=" << rejected.dump();
  return out.str();
}

}  // namespace

int run_locally(const LocalRunOptions& options) {
  FederationSpec spec;
  try {
    spec = load_spec(options.spec_path);
  } catch (const SpecError& e) {
    std::cerr << "zk0: invalid spec " << options.spec_path << ":\n" << e.what() << "\n";
    return 2;
  }
  // On one machine there is no Secret or volume claim to mount: those sources need the operator.
  std::vector<std::string> needs_cluster;
  if (!spec.transport.tls.secret_name.empty()) needs_cluster.push_back("spec.transport.tls.secretName: set caFile, certFile and keyFile instead");
  for (size_t i = 0; i < spec.clients.size(); ++i)
    if (!spec.clients[i].tls.secret_name.empty())
      needs_cluster.push_back("spec.clients[" + std::to_string(i) + "].tls.secretName: set certFile and keyFile instead");
  if (!spec.checkpoints.signing_key_secret.empty())
    needs_cluster.push_back("spec.checkpoints.signingKeySecret: set signingKeyFile instead");
  for (size_t i = 0; i < spec.clients.size(); ++i)
    if (spec.clients[i].dataset.volume_claim)
      needs_cluster.push_back("spec.clients[" + std::to_string(i) + "].dataset.volumeClaim: name the dataset by path on this machine");
  if (spec.evaluation.dataset.volume_claim)
    needs_cluster.push_back("spec.evaluation.dataset.volumeClaim: name the dataset by path on this machine");
  if (!needs_cluster.empty()) {
    std::cerr << "zk0: " << options.spec_path << " needs a cluster (kubectl apply) for:\n";
    for (const auto& n : needs_cluster) std::cerr << "  " << n << "\n";
    return 2;
  }
  const auto ignored = cluster_only_fields(spec);
  if (!ignored.empty()) {
    std::string list;
    for (const auto& f : ignored) list += (list.empty() ? "" : ",") + f;
    std::cout << "zk0: ignored on this machine (cluster only): " << list << std::endl;
  }
  fs::path spec_path = fs::absolute(options.spec_path);
  const fs::path out = fs::absolute(spec.output_dir);
  if (options.fresh) fs::remove_all(out);
  const fs::path logs = out / "logs";
  fs::create_directories(logs);
  if (spec.transport.tls.generated()) {
    // mutual TLS on one machine: a CA for this run and a certificate per process, each client's
    // naming it, handed to the processes in a resolved copy of the spec.
    std::vector<std::string> names;
    for (const auto& c : spec.clients) names.push_back(c.name);
    const RunCertificates certs = issue_run_certificates((out / "tls").string(), spec.name, names);
    spec.transport.tls.ca_file = certs.ca_file;
    spec.transport.tls.cert_file = certs.aggregator.cert_file;
    spec.transport.tls.key_file = certs.aggregator.key_file;
    for (auto& c : spec.clients) {
      c.tls.cert_file = certs.clients.at(c.name).cert_file;
      c.tls.key_file = certs.clients.at(c.name).key_file;
    }
    spec_path = logs / "run.yaml";
    write_file_atomic(spec_path.string(), to_yaml(spec));
    std::cout << "zk0: mutual TLS with certificates issued for this run in " << (out / "tls").string() << std::endl;
  }
  fs::remove(out / "status.json");
  const fs::path bin = fs::read_symlink("/proc/self/exe").parent_path();
  const fs::path port_file = logs / "aggregator.port";
  fs::remove(port_file);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  std::vector<Child> children;
  children.push_back({"aggregator", -1, (logs / "aggregator.log").string()});
  const fs::path metrics_port_file = logs / "aggregator.metrics-port";
  fs::remove(metrics_port_file);
  children[0].pid = spawn({(bin / "zk0-aggregator").string(), "--spec", spec_path.string(), "--listen", "127.0.0.1:0",
                           "--port-file", port_file.string(), "--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
                           metrics_port_file.string()},
                          children[0].log);
  std::cout << "zk0: run '" << spec.name << "': " << spec.clients.size() << " clients, " << spec.rounds
            << " rounds; logs in " << logs.string() << std::endl;

  // The aggregator binds a free port and names it in the port file.
  std::string port;
  while (port.empty()) {
    if (interrupted || reap(children[0], false)) {
      stop_all(children);
      std::cerr << "zk0: the aggregator stopped before it listened (exit " << children[0].exit_code << "); see "
                << children[0].log << "\n";
      return interrupted ? 130 : 1;
    }
    if (fs::exists(port_file)) {
      port = read_file(port_file.string());
      port.erase(port.find_last_not_of("\n ") + 1);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  const std::string address = "127.0.0.1:" + port;
  if (fs::exists(metrics_port_file)) {
    std::string metrics_port = read_file(metrics_port_file.string());
    std::cout << "zk0: aggregator metrics at http://127.0.0.1:" << metrics_port.substr(0, metrics_port.find('\n')) << "/metrics"
              << std::endl;
  }
  // The workers train at the same time on this machine's CPUs: each gets its share of threads
  // unless the spec (resources.cpu) or the environment (OMP_NUM_THREADS) says otherwise.
  std::map<std::string, std::string> worker_env;
  if (!std::getenv("OMP_NUM_THREADS")) {
    const auto cpus = static_cast<size_t>(available_cpus());
    worker_env["OMP_NUM_THREADS"] = std::to_string(std::max<size_t>(1, cpus / spec.clients.size()));
  }
  for (const auto& c : spec.clients) {
    Child w{c.name, -1, (logs / (c.name + ".log")).string()};
    w.pid = spawn({(bin / "zk0-worker").string(), "--spec", spec_path.string(), "--client", c.name, "--aggregator", address,
                   "--metrics-listen", "127.0.0.1:0", "--metrics-port-file", (logs / (c.name + ".metrics-port")).string(),
                   "--state-dir", (out / "workers" / c.name).string()},
                  w.log, worker_env);
    children.push_back(w);
  }

  std::string last_line;
  int rc = 0;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    if (interrupted) {
      std::cout << "zk0: interrupted, stopping " << children.size() << " processes" << std::endl;
      stop_all(children);
      return 130;
    }
    for (size_t i = 1; i < children.size(); ++i) {
      Child& w = children[i];
      if (w.running && reap(w, false) && w.exit_code != 0)
        std::cout << "zk0: client " << w.name << " exited with code " << w.exit_code << " (see " << w.log << ")" << std::endl;
    }
    try {
      const auto status = nlohmann::json::parse(read_file((out / "status.json").string()));
      const std::string line = progress_line(status);
      if (line != last_line) std::cout << line << std::endl;
      last_line = line;
    } catch (const std::exception&) {
      // not written yet
    }
    if (reap(children[0], false)) {
      rc = children[0].exit_code;
      break;
    }
  }
  stop_all(children);
  if (rc != 0) {
    std::cerr << "zk0: the aggregator failed (exit " << rc << "); see " << children[0].log << "\n";
    return rc;
  }
  try {
    const auto metrics = nlohmann::json::parse(read_file((out / "federated_metrics.json").string()));
    std::optional<double> first, last;
    for (const auto& r : metrics.at("rounds"))
      if (!r["server_eval_loss"].is_null()) {
        if (!first) first = r["server_eval_loss"].get<double>();
        last = r["server_eval_loss"].get<double>();
      }
    if (first && last)
      std::cout << "zk0: server eval loss " << *first << " at round 0 -> " << *last << " at round " << spec.rounds << "\n";
  } catch (const std::exception&) {
  }
  std::cout << "zk0: run complete. Outputs in " << out.string() << ":\n"
            << "  federated_metrics.json / .csv, rounds/, server_eval_loss.{svg,png}, client_losses.{svg,png},\n"
            << "  checkpoints/" << read_file((out / "checkpoints" / "latest").string());
  return 0;
}

}  // namespace zk0
