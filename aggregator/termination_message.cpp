#include "aggregator/termination_message.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/util/log.h"

namespace zk0 {

namespace {
constexpr size_t kKubeletLimit = 4096;  // bytes of a termination message the kubelet keeps
constexpr size_t kMessageLimit = 512;
}  // namespace

std::string termination_summary(const std::string& status_json) {
  const nlohmann::json status = nlohmann::json::parse(status_json);
  nlohmann::json summary = nlohmann::json::object();
  for (const char* key : {"run", "phase", "round", "rounds", "ready_clients", "last_server_eval_loss", "evaluation_losses", "privacy_epsilon",
                          "privacy_delta"})
    if (status.contains(key)) summary[key] = status[key];
  if (status.contains("message") && status["message"].is_string()) {
    std::string message = status["message"];
    if (message.size() > kMessageLimit) message = message.substr(0, kMessageLimit) + "...";
    summary["message"] = message;
  }
  std::string without_clients = summary.dump();
  nlohmann::json clients = nlohmann::json::object();
  const nlohmann::json reported = status.value("clients", nlohmann::json::object());
  for (const auto& [name, c] : reported.items()) {
    nlohmann::json brief = {{"state", c.value("state", "")}};
    if (c.contains("last_loss")) brief["last_loss"] = c["last_loss"];
    if (c.contains("contribution_score")) brief["contribution_score"] = c["contribution_score"];
    if (c.contains("contribution_score_by_set")) brief["contribution_score_by_set"] = c["contribution_score_by_set"];
    // Whole seconds: when a remote client was last heard from stays in its run's status.
    if (c.contains("last_seen_unix") && c["last_seen_unix"].is_number())
      brief["last_seen_unix"] = static_cast<int64_t>(c["last_seen_unix"].get<double>());
    clients[name] = brief;
  }
  summary["clients"] = clients;
  std::string with_clients = summary.dump();
  return with_clients.size() <= kKubeletLimit ? with_clients : without_clients;
}

void write_termination_message(const std::string& path, const std::string& status_json) {
  std::ofstream out(path, std::ios::trunc);
  out << termination_summary(status_json);
  out.flush();
  if (!out) log_warn("termination_message_not_written", {kv("path", path)});
}

}  // namespace zk0
