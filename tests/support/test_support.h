#pragma once
// Helpers for tests that cross process boundaries: temporary folders, child processes with
// their output in a log file, polling with a deadline, and spec files built from a template.
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace zk0::test {

std::string make_temp_dir(const std::string& tag);
std::string bin(const std::string& name);  // build/bin/<name>
std::string shared_dir();                  // ../shared beside the checkout

class Process {
 public:
  Process(std::vector<std::string> argv, std::string log_path);
  ~Process();  // kills a child still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void signal(int sig);
  // Exit code (128 + signal when killed), or -1 if still running at the timeout.
  int wait(std::chrono::milliseconds timeout);
  bool running();
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_; }
  std::string log() const;

 private:
  pid_t pid_ = -1;
  std::string log_;
  int exit_code_ = -1;
};

// The body of an HTTP/1.0 GET to 127.0.0.1:port; empty when nothing answers.
std::string http_get(int port, const std::string& path);

int free_port();  // a loopback TCP port free a moment ago
// Runs a shell command; returns stdout and stderr together. Without exit_code, a non-zero exit
// throws with the output.
std::string run_command(const std::string& command, int* exit_code = nullptr);

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout);
nlohmann::json read_json(const std::string& path);  // throws if missing or not JSON
bool file_exists(const std::string& path);

// A small FederationRun with `clients` synthetic clients (c0, c1, ...) writing to `output_dir`.
// `overrides` sets the template's other placeholders (see kSmallSpecDefaults in the .cpp), e.g.
// {"minFitClients", "2"}; an unknown placeholder name throws.
std::string small_spec(const std::string& output_dir, int clients, int rounds,
                       const std::map<std::string, std::string>& overrides = {});
std::string write_spec(const std::string& dir, const std::string& yaml);  // returns the path

// CA, server and client certificates (SAN 127.0.0.1 and localhost) from the openssl CLI.
struct Certificates {
  std::string ca, server_cert, server_key, client_cert, client_key, rogue_cert, rogue_key;
};
Certificates generate_certificates(const std::string& dir);

}  // namespace zk0::test
