#include "operator/pod_status.h"

#include <set>
#include <sstream>

namespace zk0::op {

using json = nlohmann::json;

int restarts_of(const json& pod) {
  int n = 0;
  for (const auto& s : pod.value("status", json::object()).value("containerStatuses", json::array())) n += s.value("restartCount", 0);
  return n;
}

std::optional<Termination> termination_of(const json& pod) {
  for (const auto& s : pod.value("status", json::object()).value("containerStatuses", json::array())) {
    const auto state = s.value("state", json::object());
    if (!state.contains("terminated")) continue;
    const json& t = state["terminated"];
    return Termination{t.value("exitCode", -1), t.value("reason", ""), t.value("message", "")};
  }
  return std::nullopt;
}

std::string last_words(const std::string& message) {
  if (message.empty() || message.front() == '{') return "";
  std::string line;
  std::istringstream lines(message);
  for (std::string l; std::getline(lines, l);)
    if (l.find_first_not_of(" \t\r") != std::string::npos) line = l;
  return line.size() > 300 ? line.substr(0, 300) + "..." : line;
}

std::string pod_phase(const json& pod) { return pod.value("status", json::object()).value("phase", "Pending"); }

std::optional<std::pair<std::string, std::string>> blocker_of(const json& pod) {
  static const std::set<std::string> kImageFailures = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"};
  static const std::set<std::string> kConfigFailures = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"};
  const json status = pod.value("status", json::object());
  for (const auto& cond : status.value("conditions", json::array()))
    if (cond.value("type", "") == "PodScheduled" && cond.value("status", "") == "False")
      return std::make_pair(cond.value("reason", "Unschedulable"), cond.value("message", "not scheduled"));
  for (const char* list : {"initContainerStatuses", "containerStatuses"})
    for (const auto& s : status.value(list, json::array())) {
      const json waiting = s.value("state", json::object()).value("waiting", json::object());
      const std::string why = waiting.value("reason", "");
      const std::string what = "container " + s.value("name", "") + " (image " + s.value("image", "") + "): " + why +
                               (waiting.contains("message") ? ": " + waiting.value("message", "") : "");
      if (kImageFailures.count(why)) return std::make_pair(std::string("ImagePullFailed"), what);
      if (kConfigFailures.count(why)) return std::make_pair(std::string("ContainerConfigError"), what);
    }
  return std::nullopt;
}

}  // namespace zk0::op
