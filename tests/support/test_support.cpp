#include "support/test_support.h"

#include <gtest/gtest.h>

#include "core/spec/federation_spec.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace zk0::test {
namespace fs = std::filesystem;

namespace {

// The folders make_temp_dir made, by the test that made them ("" for none), removed as the
// tests pass. A gtest listener, registered before main runs (every test binary links this file).
class TempDirs : public ::testing::EmptyTestEventListener {
 public:
  static TempDirs& instance() {
    static TempDirs* dirs = [] {
      auto* d = new TempDirs;
      ::testing::UnitTest::GetInstance()->listeners().Append(d);  // gtest owns it from here
      return d;
    }();
    return *dirs;
  }
  void add(const std::string& dir) {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    std::lock_guard<std::mutex> lock(mu_);
    made_[test ? std::string(test->test_suite_name()) + "." + test->name() : ""].push_back(dir);
  }
  void OnTestEnd(const ::testing::TestInfo& test) override {
    settle(std::string(test.test_suite_name()) + "." + test.name(), test.result()->Passed());
  }
  void OnTestProgramEnd(const ::testing::UnitTest& unit) override { settle("", unit.Passed()); }

 private:
  void settle(const std::string& owner, bool passed) {
    std::vector<std::string> dirs;
    {
      std::lock_guard<std::mutex> lock(mu_);
      dirs.swap(made_[owner]);
    }
    const char* keep = std::getenv("ZK0_KEEP_TEST_DIRS");
    for (const auto& dir : dirs) {
      if (!passed) std::cerr << "kept " << dir << " (" << (owner.empty() ? "a test failed" : owner + " failed") << ")\n";
      if (!passed || (keep && std::string(keep) == "1")) continue;
      std::error_code ignored;  // a folder a child process still writes to is left, not fatal
      fs::remove_all(dir, ignored);
    }
  }
  std::mutex mu_;
  std::map<std::string, std::vector<std::string>> made_;
};

const bool kTempDirsListening = (TempDirs::instance(), true);

}  // namespace

std::string make_temp_dir(const std::string& tag) {
  std::string pattern = (fs::temp_directory_path() / ("zk0-" + tag + "-XXXXXX")).string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  TempDirs::instance().add(pattern);
  return pattern;
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string bin(const std::string& name) { return std::string(ZK0_BIN_DIR) + "/" + name; }
std::string shared_dir() { return (fs::path(ZK0_SOURCE_DIR).parent_path() / "shared").string(); }

Process::Process(std::vector<std::string> argv, std::string log_path) : log_(std::move(log_path)) {
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
}

void Process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

bool Process::running() {
  if (exit_code_ >= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

int Process::wait(std::chrono::milliseconds timeout) {
  wait_until([&] { return !running(); }, timeout);
  return exit_code_;
}

std::string Process::log() const {
  std::ifstream in(log_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string http_get(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, request.data(), request.size()) < 0) {
    close(fd);
    return "";
  }
  std::string response;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) response.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos || response.rfind("HTTP/1.", 0) != 0 || response.find(" 200 ") > 12 ? "" : response.substr(body + 4);
}

int free_port() {
  // Below the kernel's ephemeral range (32768-60999 here, read at run time), which is where every
  // bind to port 0 and every outgoing connection draws from: a port handed out here cannot be
  // drawn by the listener on port 0 that the process under test opens before it binds this one
  // (it once was: the aggregator's metrics listener took its gRPC port). Also below Kubernetes'
  // NodePort range (30000-32767) and clear of the fixed ports tests/kube/cluster.sh uses.
  int ephemeral_low = 32768, ephemeral_high = 60999;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low >> ephemeral_high;
  constexpr int kLow = 11000, kHigh = 23500;  // above the kubelet's 10248 and 10250, below etcd's 23790
  if (ephemeral_low <= kHigh) throw std::runtime_error("free_port: the ephemeral port range starts at " + std::to_string(ephemeral_low) +
                                                       ", inside the " + std::to_string(kLow) + "-" + std::to_string(kHigh) + " tests use");
  static std::mutex mu;
  static std::mt19937 pick(std::random_device{}());
  std::lock_guard<std::mutex> lock(mu);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = std::uniform_int_distribution<int>(kLow, kHigh)(pick);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);  // free on every address, whichever the process binds
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (free) return port;
  }
  throw std::runtime_error("free_port: no free port in " + std::to_string(kLow) + "-" + std::to_string(kHigh) + " after 1000 tries");
}

std::string table_column(const std::string& table, const std::string& column) {
  std::istringstream lines(table);
  std::string header, row;
  std::getline(lines, header);
  std::getline(lines, row);
  const size_t at = header.find(column);
  if (at == std::string::npos || at >= row.size()) return "";
  const size_t end = row.find(' ', at);
  return row.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

std::string run_command(const std::string& command, int* exit_code) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) throw std::runtime_error("cannot run " + command);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (exit_code) *exit_code = code;
  else if (code != 0) throw std::runtime_error("failed (" + std::to_string(code) + "): " + command + "\n" + out);
  return out;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

bool holds_for(const std::function<bool()>& condition, std::chrono::milliseconds duration) {
  const auto until = std::chrono::steady_clock::now() + duration;
  do {
    if (!condition()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < until);
  return condition();
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("missing " + path);
  return nlohmann::json::parse(in);
}

bool file_exists(const std::string& path) { return fs::exists(path); }

std::string spec_problems(const std::string& yaml) {
  try {
    parse_spec(yaml);
  } catch (const SpecError& e) {
    return e.what();
  }
  return "";
}

size_t count_of(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

namespace {
const std::map<std::string, std::string> kSmallSpecDefaults = {
    {"localSteps", "20"},       {"batchSize", "32"},          {"lr", "1.0e-3"},
    {"strategyType", "fedprox"}, {"proximalMu", "proximalMu: 0.01"}, {"fractionFit", "1.0"},
    {"minFitClients", "2"},     {"minAvailableClients", "2"}, {"startTimeoutSeconds", "30"},
    {"roundTimeoutSeconds", "60"}, {"maxRoundAttempts", "maxRoundAttempts: 3"}, {"evalEvery", "1"},
    {"checkpointEvery", "1"},   {"keepLast", "0"},            {"chunkSize", "4Mi"},
    {"transferAttempts", "3"},  {"tls", ""},                  {"hiddenDim", "64"},
    {"episodeLength", "40"},    {"clientExtra", ""},          {"optimizerState", "reset"},
    {"aggregation", ""},
    {"evaluation", "dataset: {synthetic: {task: \"held-out task\", episodes: 4, episodeLength: ${episodeLength}, seed: 99}}\n"
                   "    batches: 2\n    batchSize: 32\n    seed: 3"}};

const char* kSmallSpec = R"(apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata:
  name: test-run
spec:
  rounds: ${rounds}
  outputDir: ${outputDir}
  clients:
${clients}
  evaluation:
    ${evaluation}
    everyRounds: ${evalEvery}
  training:
    localSteps: ${localSteps}
    batchSize: ${batchSize}
    optimizer: {lr: ${lr}, state: ${optimizerState}}
    seed: 11
  strategy:
    type: ${strategyType}
    ${proximalMu}
    fractionFit: ${fractionFit}
    minFitClients: ${minFitClients}
    minAvailableClients: ${minAvailableClients}
    startTimeoutSeconds: ${startTimeoutSeconds}
    roundTimeoutSeconds: ${roundTimeoutSeconds}
    ${maxRoundAttempts}
    ${aggregation}
  policy:
    type: flow-matching-mlp
    config: {chunkSize: 5, hiddenDim: ${hiddenDim}, layers: 2}
  checkpoints: {everyRounds: ${checkpointEvery}, keepLast: ${keepLast}}
  transport:
    chunkSize: ${chunkSize}
    transferAttempts: ${transferAttempts}
${tls}
)";
}  // namespace

ParameterSet point(std::vector<float> values, const std::string& name) {
  ParameterSet p;
  Tensor t = make_tensor(name, DType::F32, {static_cast<int64_t>(values.size())});
  std::copy(values.begin(), values.end(), t.as<float>());
  p.tensors.push_back(std::move(t));
  return p;
}

std::string small_spec(const std::string& output_dir, int clients, int rounds,
                       const std::map<std::string, std::string>& overrides) {
  std::map<std::string, std::string> values = kSmallSpecDefaults;
  for (const auto& [k, v] : overrides) {
    if (!values.count(k)) throw std::invalid_argument("small_spec: unknown placeholder " + k);
    values[k] = v;
  }
  std::string client_list;
  for (int i = 0; i < clients; ++i)
    client_list += "    - name: c" + std::to_string(i) + "\n      dataset: {synthetic: {task: \"task " + std::to_string(i) +
                   "\", episodes: 6, episodeLength: " + values["episodeLength"] + ", seed: " + std::to_string(i) + "}}\n" +
                   [&] {
                     std::string extra = values["clientExtra"];
                     for (size_t at; (at = extra.find("{name}")) != std::string::npos;) extra.replace(at, 6, "c" + std::to_string(i));
                     return extra;
                   }();
  values["clients"] = client_list;
  values["rounds"] = std::to_string(rounds);
  values["outputDir"] = output_dir;
  std::string out = kSmallSpec;
  // Twice: a value may hold placeholders of its own (evaluation's ${episodeLength}).
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& [k, v] : values) {
      const std::string key = "${" + k + "}";
      for (size_t pos; (pos = out.find(key)) != std::string::npos;) out.replace(pos, key.size(), v);
    }
  return out;
}

std::string write_spec(const std::string& dir, const std::string& yaml) {
  const std::string path = dir + "/run.yaml";
  std::ofstream(path) << yaml;
  return path;
}

std::string tiny_smolvla_policy() {
  return "  policy:\n    type: smolvla\n    config:\n"
         "      vlm_model_name: " + std::string(ZK0_SOURCE_DIR) + "/examples/smolvla-tiny/backbone\n"
         "      num_vlm_layers: 2\n      chunk_size: 6\n      n_action_steps: 6\n"
         "      resize_imgs_with_padding: [64, 64]\n      tokenizer_max_length: 12\n"
         "      input_features: {observation.state: {type: STATE, shape: [6]}, "
         "observation.images.front: {type: VISUAL, shape: [3, 64, 96]}}\n"
         "      output_features: {action: {type: ACTION, shape: [6]}}\n";
}

Certificates generate_certificates(const std::string& dir, const std::string& run, const std::vector<std::string>& clients) {
  auto sh = [](const std::string& cmd) {
    if (std::system((cmd + " > /dev/null 2>&1").c_str()) != 0) throw std::runtime_error("failed: " + cmd);
  };
  Certificates c;
  c.dir = dir;
  c.ca = dir + "/ca.pem";
  c.server_cert = dir + "/server.pem", c.server_key = dir + "/server.key";
  c.rogue_cert = dir + "/rogue.pem", c.rogue_key = dir + "/rogue.key";
  // EC keys: issuing one is instant, where RSA costs a noticeable fraction of a second.
  const std::string key_options = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  sh("openssl req -x509 " + key_options + " -days 2 -subj /CN=zk0-test-ca -keyout " + dir + "/ca.key -out " + c.ca);
  auto issue = [&](const std::string& name, const std::string& san, const std::string& ca_cert, const std::string& ca_key) {
    const std::string ext = dir + "/" + name + ".ext";
    std::ofstream(ext) << "subjectAltName=" << san << "\n";
    sh("openssl req " + key_options + " -subj /CN=" + name + " -keyout " + dir + "/" + name + ".key -out " + dir + "/" + name + ".csr");
    sh("openssl x509 -req -days 2 -in " + dir + "/" + name + ".csr -CA " + ca_cert + " -CAkey " + ca_key +
       " -CAcreateserial -extfile " + ext + " -out " + dir + "/" + name + ".pem");
  };
  issue("server", "IP:127.0.0.1,DNS:localhost", c.ca, dir + "/ca.key");
  for (const auto& name : clients) issue(name, "URI:spiffe://zk0.io/run/" + run + "/client/" + name, c.ca, dir + "/ca.key");
  // A certificate naming c0 from a CA the aggregator does not trust.
  sh("openssl req -x509 " + key_options + " -days 2 -subj /CN=rogue-ca -keyout " + dir + "/rogue-ca.key -out " + dir + "/rogue-ca.pem");
  issue("rogue", "URI:spiffe://zk0.io/run/" + run + "/client/c0", dir + "/rogue-ca.pem", dir + "/rogue-ca.key");
  return c;
}

std::string client_tls_extra(const Certificates& certs) {
  return "      tls: {certFile: " + certs.dir + "/{name}.pem, keyFile: " + certs.dir + "/{name}.key}\n";
}

std::string mutual_tls_block(const Certificates& certs) {
  return "    tls: {caFile: " + certs.ca + ", certFile: " + certs.server_cert + ", keyFile: " + certs.server_key + ", mutual: true}";
}

}  // namespace zk0::test
