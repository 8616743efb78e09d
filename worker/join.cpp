#include "worker/join.h"

#include <grpcpp/grpcpp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <set>

#include "core/lerobot/metadata.h"
#include "core/security/certificate.h"
#include "core/security/join_token.h"
#include "core/security/local_ca.h"
#include "core/security/pinned_ca.h"
#include "core/spec/federation_spec.h"
#include "core/util/exit_codes.h"
#include "core/util/fs.h"
#include "zk0/v1/federation.grpc.pb.h"

namespace zk0 {

namespace {

namespace fs = std::filesystem;
constexpr auto kConnectTimeout = std::chrono::seconds(15);

int usage() {
  std::cerr << "usage: zk0 join --endpoint HOST:PORT (--token TOKEN | --token-file PATH) --dataset PATH\n"
               "                [--device cpu|cuda] [--state-dir DIR] [--metrics-listen HOST:PORT] [--termination-log PATH]\n"
               "  joins a run as the remote client the token names, trains on the LeRobot dataset at PATH;\n"
               "  only model updates leave this machine. DIR (default ~/.local/share/zk0/RUN/CLIENT) keeps\n"
               "  the key, the certificate and the worker's state; run again, it rejoins with them.\n";
  return kExitInvalidInput;
}

int fail(const std::string& message, int code = kExitError) {
  std::cerr << "zk0 join: " << message << "\n";
  return code;
}

fs::path default_state_dir(const JoinToken& token) {
  const char* data_home = std::getenv("XDG_DATA_HOME");
  const char* home = std::getenv("HOME");
  const fs::path base = data_home && *data_home ? fs::path(data_home) : fs::path(home ? home : ".") / ".local" / "share";
  return base / "zk0" / token.run / token.client;
}

// Seconds the certificate at `path` has left, and its whole lifetime; nullopt when unreadable.
std::optional<std::pair<int64_t, int64_t>> certificate_time_left(const fs::path& path) {
  try {
    const std::string pem = read_file(path.string());
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    std::unique_ptr<X509, decltype(&X509_free)> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
    if (!cert) return std::nullopt;
    int days = 0, seconds = 0;
    ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert.get()));
    const int64_t left = int64_t{days} * 86400 + seconds;
    ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(cert.get()), X509_get0_notAfter(cert.get()));
    return std::make_pair(left, int64_t{days} * 86400 + seconds);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// This client's entry in `spec`, given this machine's dataset and device.
ClientSpec& on_this_machine(FederationSpec& spec, const std::string& client, const fs::path& dataset, bool cuda) {
  auto me = std::find_if(spec.clients.begin(), spec.clients.end(), [&](const ClientSpec& c) { return c.name == client; });
  if (me == spec.clients.end()) throw std::runtime_error("the run's spec does not list client '" + client + "'");
  me->dataset = DatasetSpec{};
  me->dataset.path = dataset.string();
  me->resources.gpu = cuda ? 1 : 0;
  return *me;
}

// The worker's spec: the run as the aggregator sent it, with this machine's dataset, device and
// certificate files in this client's entry.
std::string worker_spec(const std::string& view_yaml, const JoinToken& token, const fs::path& dataset, bool cuda, const fs::path& state) {
  FederationSpec spec = parse_spec(view_yaml);
  if (spec.name != token.run) throw std::runtime_error("the aggregator sent the spec of run '" + spec.name + "'");
  ClientSpec& me = on_this_machine(spec, token.client, dataset, cuda);
  if (!me.remote) throw std::runtime_error("the aggregator's spec does not list '" + token.client + "' as a remote client");
  me.remote = false;
  me.tls.cert_file = (state / "client.crt").string();
  me.tls.key_file = (state / "client.key").string();
  spec.transport.tls.ca_file = (state / "ca.crt").string();
  spec.transport.tls.server_name = token.server_name;
  const std::string yaml = to_yaml(spec);
  parse_spec(yaml);  // what the worker will read must be valid
  return yaml;
}

std::shared_ptr<grpc::Channel> enrollment_channel(const std::string& endpoint, const std::string& ca_pem, const std::string& server_name,
                                                  const std::string& key_pem = "", const std::string& cert_pem = "") {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca_pem;
  options.pem_private_key = key_pem;
  options.pem_cert_chain = cert_pem;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(server_name);
  return grpc::CreateCustomChannel(endpoint, grpc::SslCredentials(options), args);
}

grpc::Status call_with_deadline(const std::function<grpc::Status(grpc::ClientContext&)>& call) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kConnectTimeout);
  ctx.set_wait_for_ready(true);
  return call(ctx);
}

void keep(const fs::path& state, const v1::JoinReply& reply, const std::string& key_pem, const std::string& spec_yaml) {
  write_file_atomic((state / "client.key").string(), key_pem);
  chmod((state / "client.key").c_str(), 0600);
  write_file_atomic((state / "client.crt").string(), reply.certificate());
  write_file_atomic((state / "ca.crt").string(), reply.ca_certificate());
  write_file_atomic((state / "run.yaml").string(), spec_yaml);
}

}  // namespace

int join_command(int argc, char** argv) {
  std::map<std::string, std::string> o;
  const std::set<std::string> known{"endpoint", "token", "token-file", "dataset", "device", "state-dir", "metrics-listen", "termination-log"};
  for (int i = 1; i < argc; i += 2) {
    const std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || !known.count(key.substr(2)) || i + 1 >= argc) return usage();
    o[key.substr(2)] = argv[i + 1];
  }
  for (const char* required : {"endpoint", "dataset"})
    if (!o.count(required)) return usage();
  if (o.count("token") == o.count("token-file")) return usage();
  if (o.count("token-file")) {
    try {
      o["token"] = read_file(o["token-file"]);
    } catch (const std::exception& e) {
      return fail("--token-file: " + std::string(e.what()), kExitInvalidInput);
    }
    // A Secret's value or a file saved from a terminal: the token without its line end.
    while (!o["token"].empty() && std::isspace(static_cast<unsigned char>(o["token"].back()))) o["token"].pop_back();
  }
  const std::string endpoint = o["endpoint"];
  const std::string device = o.count("device") ? o["device"] : "cpu";
  if (device != "cpu" && device != "cuda") return fail("--device must be cpu or cuda (got '" + device + "')", kExitInvalidInput);

  // Everything that can be checked here is checked before the token is spent.
  JoinToken token;
  try {
    token = read_join_token(o["token"]);
  } catch (const JoinTokenError& e) {
    return fail(e.what(), kExitInvalidInput);
  }
  const fs::path dataset = fs::absolute(o["dataset"]);
  try {
    lerobot::load_metadata(dataset.string());
  } catch (const std::exception& e) {
    return fail("--dataset " + dataset.string() + " is not a LeRobot dataset: " + e.what(), kExitInvalidInput);
  }
  if (device == "cuda" && !torch::cuda::is_available())
    return fail("--device cuda: CUDA is not available on this machine (no GPU, or no driver); use --device cpu", kExitInvalidInput);
  const fs::path state = o.count("state-dir") ? fs::absolute(o["state-dir"]) : default_state_dir(token);
  fs::create_directories(state);
  chmod(state.c_str(), 0700);

  bool rejoining = false;
  try {
    const auto left = certificate_time_left(state / "client.crt");
    const bool have_certificate = left && left->first > 0 && fs::exists(state / "client.key") && fs::exists(state / "ca.crt");
    rejoining = have_certificate && left->first > left->second / 3;
    if (rejoining) {
      std::cout << "zk0 join: rejoining as " << token.client << " with the certificate in " << state.string() << std::endl;
    } else {
      const std::string ca_pem = fetch_pinned_ca(endpoint, token.ca_sha256, token.server_name, kConnectTimeout);
      const KeyAndRequest key = new_key_and_request(token.client);
      v1::JoinReply reply;
      grpc::Status status;
      if (have_certificate) {
        // Two thirds of its life gone: renewed on the certificate itself, the token not needed.
        v1::RenewRequest req;
        req.set_certificate_request(key.request_pem);
        auto stub = v1::Enrollment::NewStub(enrollment_channel(endpoint, ca_pem, token.server_name,
                                                               read_file((state / "client.key").string()),
                                                               read_file((state / "client.crt").string())));
        status = call_with_deadline([&](grpc::ClientContext& ctx) { return stub->Renew(&ctx, req, &reply); });
      } else {
        v1::JoinRequest req;
        req.set_token(o["token"]);
        req.set_certificate_request(key.request_pem);
        auto stub = v1::Enrollment::NewStub(enrollment_channel(endpoint, ca_pem, token.server_name));
        status = call_with_deadline([&](grpc::ClientContext& ctx) { return stub->Join(&ctx, req, &reply); });
      }
      if (!status.ok()) {
        const bool refused = status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                             status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
                             status.error_code() == grpc::StatusCode::INVALID_ARGUMENT;
        return fail(std::string(refused ? "the aggregator refused to " : "could not ") + (have_certificate ? "renew" : "join") + ": " +
                        status.error_message(),
                    refused ? kExitInvalidInput : kExitError);
      }
      const auto issued = parse_certificate(reply.certificate());
      if (client_named_by(issued, token.run) != token.client)
        return fail("the aggregator issued a certificate that does not name client '" + token.client + "'");
      keep(state, reply, key.key_pem, worker_spec(reply.spec(), token, dataset, device == "cuda", state));
      std::cout << "zk0 join: joined run " << token.run << " as " << token.client << "; certificate " << issued.fingerprint_sha256.substr(0, 16)
                << " in " << state.string() << std::endl;
    }
  } catch (const SpecError& e) {
    return fail(std::string("the run's spec does not fit this machine:\n") + e.what(), kExitInvalidInput);
  } catch (const std::exception& e) {
    return fail(e.what());
  }

  // The spec kept in the state folder names the dataset and device of an earlier join; this one's win.
  if (rejoining) try {
      FederationSpec spec = load_spec((state / "run.yaml").string());
      on_this_machine(spec, token.client, dataset, device == "cuda");
      write_file_atomic((state / "run.yaml").string(), to_yaml(spec));
    } catch (const std::exception& e) {
      return fail(std::string("the kept spec in ") + state.string() + " is unusable (delete the folder to join afresh): " + e.what());
    }
  // The worker only dials out; its metrics stay on this machine unless asked otherwise.
  const std::string worker = (fs::read_symlink("/proc/self/exe").parent_path() / "zk0-worker").string();
  std::vector<std::string> args{worker,
                                "--spec", (state / "run.yaml").string(),
                                "--client", token.client,
                                "--aggregator", endpoint,
                                "--state-dir", (state / "worker").string(),
                                "--metrics-listen", o.count("metrics-listen") ? o["metrics-listen"] : "127.0.0.1:9465"};
  if (o.count("termination-log")) args.insert(args.end(), {"--termination-log", o["termination-log"]});
  std::vector<char*> argv_out;
  for (auto& a : args) argv_out.push_back(a.data());
  argv_out.push_back(nullptr);
  std::cout.flush();
  execv(worker.c_str(), argv_out.data());
  return fail("cannot start " + worker + ": " + std::strerror(errno));
}

}  // namespace zk0
