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

#include "core/tensor/parameter_set.h"

namespace zk0::test {

// One F32 tensor `name` holding `values`: the small updates rule tests compute by hand.
ParameterSet point(std::vector<float> values, const std::string& name = "w");

// A new folder under the system's temp directory. It goes when its test passes (made outside a
// test, in a suite's or environment's setup: when every test of the program passed); a failed
// test's folders stay for inspection, and are named on stderr. ZK0_KEEP_TEST_DIRS=1 keeps all.
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

// A TCP port free on every address a moment ago, outside the range ports are drawn from for
// port 0 and outgoing connections.
int free_port();
// Runs a shell command; returns stdout and stderr together. Without exit_code, a non-zero exit
// throws with the output.
// The value in `column` of the first row of a table kubectl printed (its header names the
// columns), or "" when the column or the row is missing.
std::string table_column(const std::string& table, const std::string& column);
std::string run_command(const std::string& command, int* exit_code = nullptr);

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout);
// What `f` throws (its what()), or "" when it returns.
std::string what_of(const std::function<void()>& f);
// A negative check: false as soon as `condition` fails within `duration` (checked every 20 ms).
bool holds_for(const std::function<bool()>& condition, std::chrono::milliseconds duration);
nlohmann::json read_json(const std::string& path);  // throws if missing or not JSON
bool file_exists(const std::string& path);
size_t count_of(const std::string& haystack, const std::string& needle);  // occurrences, overlapping ones too
// What parse_spec refuses in `yaml` (its SpecError's text), or "" when it takes it.
std::string spec_problems(const std::string& yaml);

// A small FederationRun with `clients` synthetic clients (c0, c1, ...) writing to `output_dir`.
// `overrides` sets the template's other placeholders (see kSmallSpecDefaults in the .cpp), e.g.
// {"minFitClients", "2"}; an unknown placeholder name throws.
std::string small_spec(const std::string& output_dir, int clients, int rounds,
                       const std::map<std::string, std::string>& overrides = {});
std::string write_spec(const std::string& dir, const std::string& yaml);  // returns the path
// The `policy:` block (indented for spec) of a tiny SmolVLA with random weights and the small
// backbone in examples/smolvla-tiny, reading one 64x96 camera: what datasets from `zk0 dataset
// synth --cameras 1 --height 64 --width 96` feed.
std::string tiny_smolvla_policy();

// From the openssl CLI, as cert-manager would issue them: a CA; the aggregator's server
// certificate (SAN 127.0.0.1, localhost); a client certificate per name in `clients`, each with
// the URI SAN spiffe://zk0.io/run/<run>/client/<name> at DIR/<name>.pem and DIR/<name>.key; and a
// certificate for client c0 from another CA (rogue).
struct Certificates {
  std::string ca, server_cert, server_key, rogue_cert, rogue_key;
  std::string client_cert(const std::string& name) const { return dir + "/" + name + ".pem"; }
  std::string client_key(const std::string& name) const { return dir + "/" + name + ".key"; }
  std::string dir;
};
Certificates generate_certificates(const std::string& dir, const std::string& run = "test-run",
                                   const std::vector<std::string>& clients = {"c0", "c1", "c2"});

// small_spec's `tls` (the aggregator's files, mutual) and `clientExtra` (each client's own
// certificate, {name} standing for the client) for mutual TLS with `certs`.
std::string mutual_tls_block(const Certificates& certs);
std::string client_tls_extra(const Certificates& certs);

}  // namespace zk0::test
