#include "cli/local_runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
#include "core/security/certificate.h"
#include "core/security/join_token.h"
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
  constexpr size_t kClientsNamed = 8;  // beyond: how many are in each state
  if (s["clients"].size() > kClientsNamed) {
    std::map<std::string, int> states;
    for (const auto& c : s["clients"]) ++states[c.value("state", "?")];
    for (const auto& [state, n] : states) out << " " << state << "=" << n;
  }
  for (auto it = s["clients"].begin(); it != s["clients"].end() && s["clients"].size() <= kClientsNamed; ++it) {
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

// The host of a listen address, or "" when it is every interface.
std::string specific_host(const std::string& listen) {
  const std::string host = listen.substr(0, listen.rfind(':'));
  return host == "0.0.0.0" || host == "[::]" || host == "*" ? "" : host;
}

// Where this machine's own workers reach an aggregator listening on `listen` (its port chosen).
std::string local_address(const std::string& listen, const std::string& port) {
  const std::string host = specific_host(listen);
  return (host.empty() ? "127.0.0.1" : host) + ":" + port;
}

// One single-use token per remote client in DIR/<client>.token (0600), and the command its owner
// runs. The server name is the one the aggregator's certificate carries.
void write_join_tokens(const FederationSpec& spec, const fs::path& dir, const std::string& listen, const std::string& port) {
  const CertificateInfo server = parse_certificate(read_file(spec.transport.tls.cert_file));
  const std::string server_name = !spec.transport.tls.server_name.empty() ? spec.transport.tls.server_name
                                  : !server.dns_sans.empty()              ? server.dns_sans.front()
                                                                          : "";
  if (server_name.empty())
    throw std::runtime_error(spec.transport.tls.cert_file + " carries no DNS name: set spec.transport.tls.serverName");
  const std::string key = read_join_token_key(spec.transport.join.token_key_file);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  fs::create_directories(dir);
  chmod(dir.c_str(), 0700);
  JoinToken claims;
  claims.run = spec.name;
  claims.expires_unix = now + spec.transport.join.token_ttl_seconds;
  claims.ca_sha256 = parse_certificate(read_file(spec.transport.tls.ca_file)).fingerprint_sha256;
  claims.server_name = server_name;
  const std::string host = specific_host(listen).empty() ? "THIS-MACHINE" : specific_host(listen);
  for (const auto& c : spec.clients) {
    if (!c.remote) continue;
    claims.client = c.name;
    claims.nonce.clear();
    const fs::path file = dir / (c.name + ".token");
    write_file_atomic(file.string(), mint_join_token(claims, key) + "\n");
    chmod(file.c_str(), 0600);
    std::cout << "zk0: remote client " << c.name << " joins with: zk0 join --endpoint " << host << ":" << port << " --token $(cat "
              << file.string() << ") --dataset PATH" << std::endl;
  }
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
  for (const auto& set : spec.evaluation.sets)
    if (set.dataset.volume_claim) needs_cluster.push_back(set.field + ".dataset.volumeClaim: name the dataset by path on this machine");
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
  const size_t local_clients =
      static_cast<size_t>(std::count_if(spec.clients.begin(), spec.clients.end(), [](const ClientSpec& c) { return !c.remote; }));
  const bool simulate = options.simulate || spec.simulation.has_value();
  int concurrency = 1;
  if (simulate) {
    try {
      concurrency = simulation_concurrency(spec, options.concurrency);
    } catch (const SpecError& e) {
      std::cerr << "zk0: " << e.what() << "\n";
      return 2;
    }
  }
  fs::path spec_path = fs::absolute(options.spec_path);
  const fs::path out = fs::absolute(spec.output_dir);
  if (options.fresh) fs::remove_all(out);
  const fs::path logs = out / "logs";
  fs::create_directories(logs);
  if (spec.transport.tls.generated()) {
    // mutual TLS on one machine: a CA for this run and a certificate per process, each client's
    // naming it, handed to the processes in a resolved copy of the spec.
    // Remote clients get theirs when they join, signed with the CA's key kept for that.
    std::vector<std::string> names;
    for (const auto& c : spec.clients)
      if (!c.remote) names.push_back(c.name);
    const RunCertificates certs = issue_run_certificates((out / "tls").string(), spec.name, names, spec.has_remote_clients());
    spec.transport.tls.ca_file = certs.ca_file;
    spec.transport.tls.cert_file = certs.aggregator.cert_file;
    spec.transport.tls.key_file = certs.aggregator.key_file;
    // The certificate names localhost; workers dialing the --listen address by another name or
    // IP verify it under that name.
    if (spec.transport.tls.server_name.empty()) spec.transport.tls.server_name = "localhost";
    for (auto& c : spec.clients) {
      if (c.remote) continue;
      c.tls.cert_file = certs.clients.at(c.name).cert_file;
      c.tls.key_file = certs.clients.at(c.name).key_file;
    }
    if (spec.has_remote_clients()) {
      spec.transport.join.ca_key_file = certs.ca_key_file;
      // Kept across restarts with the CA: tokens handed out before still work.
      spec.transport.join.token_key_file = (out / "tls" / "join-token.key").string();
      if (!fs::exists(spec.transport.join.token_key_file)) {
        write_file_atomic(spec.transport.join.token_key_file, new_join_token_key() + "\n");
        chmod(spec.transport.join.token_key_file.c_str(), 0600);
      }
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
  children[0].pid = spawn({(bin / "zk0-aggregator").string(), "--spec", spec_path.string(), "--listen", options.listen,
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
  const std::string address = local_address(options.listen, port);
  if (fs::exists(metrics_port_file)) {
    std::string metrics_port = read_file(metrics_port_file.string());
    std::cout << "zk0: aggregator metrics at http://127.0.0.1:" << metrics_port.substr(0, metrics_port.find('\n')) << "/metrics"
              << std::endl;
  }
  // The workers train at the same time on this machine's CPUs: each gets its share of threads
  // unless the spec (resources.cpu) or the environment (OMP_NUM_THREADS) says otherwise.
  // Simulating, the clients training at once share them.
  std::map<std::string, std::string> worker_env;
  const size_t training_at_once = simulate ? static_cast<size_t>(concurrency) : local_clients;
  if (!std::getenv("OMP_NUM_THREADS") && training_at_once > 0) {
    const auto cpus = static_cast<size_t>(available_cpus());
    worker_env["OMP_NUM_THREADS"] = std::to_string(std::max<size_t>(1, cpus / training_at_once));
  }
  // OpenMP's idle threads spin between parallel regions by default; in a process whose many
  // virtual clients must keep answering heartbeats that spinning takes the CPU they need.
  if (simulate && !std::getenv("OMP_WAIT_POLICY")) worker_env["OMP_WAIT_POLICY"] = "PASSIVE";
  if (spec.has_remote_clients()) {
    try {
      write_join_tokens(spec, out / "join", options.listen, port);
    } catch (const std::exception& e) {
      stop_all(children);
      std::cerr << "zk0: cannot make the remote clients' join tokens: " << e.what() << "\n";
      return 1;
    }
  }
  if (simulate && local_clients > 0) {
    Child w{"simulation", -1, (logs / "simulation.log").string()};
    w.pid = spawn({(bin / "zk0-worker").string(), "simulate", "--spec", spec_path.string(), "--aggregator", address,
                   "--concurrency", std::to_string(concurrency), "--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
                   (logs / "simulation.metrics-port").string(), "--state-dir", (out / "workers").string()},
                  w.log, worker_env);
    children.push_back(w);
    std::cout << "zk0: simulating " << local_clients << " clients in one worker process, " << concurrency
              << " training at a time" << std::endl;
  }
  for (const auto& c : spec.clients) {
    if (c.remote || simulate) continue;
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
        std::cout << "zk0: " << (w.name == "simulation" && simulate ? "the simulation" : "client " + w.name) << " exited with code " << w.exit_code << " (see " << w.log << ")" << std::endl;
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
    // Each evaluation set's first and last loss; the first set's is the server loss.
    for (size_t i = 0; i < spec.evaluation.sets.size(); ++i) {
      const std::string& set = spec.evaluation.sets[i].name;
      std::optional<double> first, last;
      for (const auto& r : metrics.at("rounds")) {
        const nlohmann::json result = r.value("eval_sets", nlohmann::json::object()).value(set, nlohmann::json());
        if (!result.is_object()) continue;
        if (!first) first = result.at("loss").get<double>();
        last = result.at("loss").get<double>();
      }
      if (!first) continue;
      if (i == 0) std::cout << "zk0: server eval loss " << *first << " at round 0 -> " << *last << " at round " << spec.rounds << "\n";
      else std::cout << "zk0: loss on evaluation set " << set << " " << *first << " -> " << *last << "\n";
    }
  } catch (const std::exception&) {
  }
  std::cout << "zk0: run complete. Outputs in " << out.string() << ":\n"
            << "  federated_metrics.json / .csv, rounds/, server_eval_loss.{svg,png}, client_losses.{svg,png},\n"
            << "  checkpoints/" << read_file((out / "checkpoints" / "latest").string());
  return 0;
}

}  // namespace zk0
