#pragma once
// A small typed-by-path client of the Kubernetes REST API on cpprestsdk: JSON in and out
// (nlohmann::json), errors as ApiError carrying the HTTP status and the API's Status reason, and
// watch streams read line by line as the API server sends them.
#include <atomic>
#include <chrono>
#include <mutex>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "operator/kube/config.h"

namespace web::http::client {
class http_client;
}

namespace zk0::kube {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string reason, const std::string& message)
      : std::runtime_error(message), status_(status), reason_(std::move(reason)) {}
  int status() const { return status_; }            // HTTP status; 0 when the server was not reached
  const std::string& reason() const { return reason_; }  // NotFound, AlreadyExists, Conflict, Expired, ...
  bool not_found() const { return status_ == 404; }
  bool conflict() const { return status_ == 409; }
  bool gone() const { return status_ == 410; }

 private:
  int status_;
  std::string reason_;
};

enum class PatchType { Merge, Json, Apply };

class KubeClient {
 public:
  explicit KubeClient(KubeConfig config);
  ~KubeClient();
  KubeClient(const KubeClient&) = delete;
  KubeClient& operator=(const KubeClient&) = delete;

  const KubeConfig& config() const { return config_; }

  // path_and_query: "/api/v1/namespaces/ns/pods?labelSelector=..."
  nlohmann::json get(const std::string& path_and_query);
  // The object's metadata only (PartialObjectMetadata): learns that a Secret exists without
  // receiving its data.
  nlohmann::json get_metadata(const std::string& path);
  nlohmann::json create(const std::string& collection_path, const nlohmann::json& object);
  nlohmann::json replace(const std::string& path, const nlohmann::json& object);
  // Apply: server-side apply as field manager zk0-operator, taking ownership of conflicts.
  nlohmann::json patch(const std::string& path, const nlohmann::json& patch, PatchType type);
  void remove(const std::string& path, const std::string& propagation = "Background");

  // Streams watch events ({"type": ..., "object": ...}) to on_event until the server ends the
  // stream, on_event returns false, or stop is set. Throws ApiError when the watch cannot start.
  void watch(const std::string& path_and_query, const std::function<bool(const nlohmann::json&)>& on_event,
             const std::atomic<bool>& stop);

 private:
  nlohmann::json request(const std::string& method, const std::string& path, const std::string& body,
                         const std::string& content_type, const std::string& accept = "application/json");

  std::string bearer_token();  // config_.token, read again from token_file once a minute

  KubeConfig config_;
  std::unique_ptr<web::http::client::http_client> http_;
  std::mutex token_mu_;
  std::string token_;
  std::chrono::steady_clock::time_point token_read_;
};

// URL-encodes a query parameter value (label selectors contain '=' and ',').
std::string query_escape(const std::string& value);

}  // namespace zk0::kube
