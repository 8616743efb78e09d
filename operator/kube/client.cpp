#include "operator/kube/client.h"

#include <cpprest/http_client.h>
#include <cpprest/containerstream.h>

#include <chrono>
#include <thread>

namespace zk0::kube {

namespace http = web::http;

namespace {

http::client::http_client_config client_config(const KubeConfig& c, std::chrono::seconds timeout) {
  http::client::http_client_config cfg;
  cfg.set_timeout(timeout);
  cfg.set_validate_certificates(true);
  const std::string ca = c.ca_pem, cert = c.client_cert_pem, key = c.client_key_pem;
  cfg.set_ssl_context_callback([ca, cert, key](boost::asio::ssl::context& ctx) {
    if (!ca.empty()) ctx.add_certificate_authority(boost::asio::buffer(ca.data(), ca.size()));
    if (!cert.empty()) {
      ctx.use_certificate_chain(boost::asio::buffer(cert.data(), cert.size()));
      ctx.use_private_key(boost::asio::buffer(key.data(), key.size()), boost::asio::ssl::context::pem);
    }
  });
  return cfg;
}

http::http_request make_request(const std::string& token, const std::string& method, const std::string& path,
                                const std::string& accept = "application/json") {
  http::http_request req(method);
  req.set_request_uri(path);
  req.headers().add("Accept", accept);
  req.headers().add("User-Agent", "zk0-operator/0.1.0");
  if (!token.empty()) req.headers().add("Authorization", "Bearer " + token);
  return req;
}

ApiError error_from(int status, const std::string& method, const std::string& path, const std::string& body) {
  std::string reason, message = body;
  try {
    const auto j = nlohmann::json::parse(body);
    reason = j.value("reason", "");
    message = j.value("message", body);
  } catch (const std::exception&) {
  }
  return ApiError(status, reason, method + " " + path + ": " + std::to_string(status) + " " + reason + ": " + message);
}

}  // namespace

std::string query_escape(const std::string& value) {
  return web::uri::encode_data_string(value);
}

KubeClient::KubeClient(KubeConfig config)
    : config_(std::move(config)),
      http_(std::make_unique<http::client::http_client>(config_.server, client_config(config_, std::chrono::seconds(30)))),
      token_(config_.token),
      token_read_(std::chrono::steady_clock::now()) {}

std::string KubeClient::bearer_token() {
  std::lock_guard<std::mutex> lock(token_mu_);
  if (!config_.token_file.empty() && std::chrono::steady_clock::now() - token_read_ >= std::chrono::minutes(1)) {
    try {
      token_ = read_token(config_.token_file);
    } catch (const std::exception&) {
      // The kubelet swaps the file atomically; a failed read keeps the token we have.
    }
    token_read_ = std::chrono::steady_clock::now();
  }
  return token_;
}

KubeClient::~KubeClient() = default;

nlohmann::json KubeClient::request(const std::string& method, const std::string& path, const std::string& body,
                                   const std::string& content_type, const std::string& accept) {
  auto req = make_request(bearer_token(), method, path, accept);
  if (!content_type.empty()) req.set_body(body, content_type);
  http::http_response resp;
  std::string text;
  try {
    resp = http_->request(req).get();
    text = resp.extract_utf8string(true).get();
  } catch (const std::exception& e) {
    throw ApiError(0, "Unreachable", method + " " + path + ": " + e.what());
  }
  if (resp.status_code() >= 300) throw error_from(resp.status_code(), method, path, text);
  if (text.empty()) return nlohmann::json::object();
  try {
    return nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw ApiError(resp.status_code(), "InvalidResponse", method + " " + path + ": response is not JSON: " + e.what());
  }
}

nlohmann::json KubeClient::get(const std::string& path) { return request("GET", path, "", ""); }

nlohmann::json KubeClient::get_metadata(const std::string& path) {
  return request("GET", path, "", "", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1");
}

nlohmann::json KubeClient::create(const std::string& collection_path, const nlohmann::json& object) {
  return request("POST", collection_path, object.dump(), "application/json");
}

nlohmann::json KubeClient::replace(const std::string& path, const nlohmann::json& object) {
  return request("PUT", path, object.dump(), "application/json");
}

nlohmann::json KubeClient::patch(const std::string& path, const nlohmann::json& patch, PatchType type) {
  switch (type) {
    case PatchType::Merge: return request("PATCH", path, patch.dump(), "application/merge-patch+json");
    case PatchType::Json: return request("PATCH", path, patch.dump(), "application/json-patch+json");
    case PatchType::Apply: {
      const std::string sep = path.find('?') == std::string::npos ? "?" : "&";
      return request("PATCH", path + sep + "fieldManager=zk0-operator&force=true", patch.dump(), "application/apply-patch+yaml");
    }
  }
  throw std::logic_error("unknown patch type");
}

void KubeClient::remove(const std::string& path, const std::string& propagation) {
  const nlohmann::json options = {{"apiVersion", "v1"}, {"kind", "DeleteOptions"}, {"propagationPolicy", propagation}};
  request("DELETE", path, options.dump(), "application/json");
}

void KubeClient::watch(const std::string& path, const std::function<bool(const nlohmann::json&)>& on_event,
                       const std::atomic<bool>& stop) {
  // A connection of its own: a watch holds it for minutes. The timeout bounds silence on the
  // stream; callers ask the server to end watches sooner (timeoutSeconds) and bookmarks arrive.
  http::client::http_client client(config_.server, client_config(config_, std::chrono::seconds(90)));
  pplx::cancellation_token_source cancel;
  http::http_response resp;
  try {
    resp = client.request(make_request(bearer_token(), "GET", path), cancel.get_token()).get();
  } catch (const std::exception& e) {
    throw ApiError(0, "Unreachable", "GET " + path + ": " + e.what());
  }
  if (resp.status_code() >= 300) throw error_from(resp.status_code(), "GET", path, resp.extract_utf8string(true).get());
  auto body = resp.body();
  // Closing the connection is the only way to end a blocked read when the operator stops.
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    while (!done && !stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stop) cancel.cancel();
  });
  struct JoinOnExit {
    std::atomic<bool>& done;
    std::thread& thread;
    ~JoinOnExit() {
      done = true;
      thread.join();
    }
  } join_on_exit{done, stopper};
  try {
    while (!stop) {
      concurrency::streams::container_buffer<std::string> line;
      const size_t n = body.read_line(line).get();
      if (n == 0 && body.is_eof()) break;
      if (line.collection().empty()) continue;
      nlohmann::json event;
      try {
        event = nlohmann::json::parse(line.collection());
      } catch (const std::exception& e) {
        throw ApiError(resp.status_code(), "InvalidResponse", "watch " + path + ": event is not JSON: " + e.what());
      }
      if (!on_event(event)) break;
    }
  } catch (const ApiError&) {
    cancel.cancel();
    throw;
  } catch (const std::exception& e) {
    cancel.cancel();
    if (!stop) throw ApiError(0, "Unreachable", "watch " + path + ": " + e.what());
    return;
  }
  cancel.cancel();
}

}  // namespace zk0::kube
