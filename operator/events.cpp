#include "operator/events.h"

#include <chrono>
#include <sstream>

#include "core/util/log.h"
#include "operator/kube/time_format.h"

namespace zk0::op {

using json = nlohmann::json;

void record_event(kube::KubeClient& client, const json& object, const std::string& kind, const std::string& type,
                  const std::string& reason, const std::string& message) {
  const auto& m = object["metadata"];
  const std::string ns = m.value("namespace", "default");
  const std::string now = kube::rfc3339_now();
  std::ostringstream name;
  name << m.value("name", "") << "." << std::hex << std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const json e = {{"apiVersion", "v1"},
                  {"kind", "Event"},
                  {"metadata", {{"name", name.str()}, {"namespace", ns}}},
                  {"involvedObject",
                   {{"apiVersion", "zk0.io/v1alpha1"}, {"kind", kind}, {"name", m.value("name", "")},
                    {"namespace", ns}, {"uid", m.value("uid", "")}}},
                  {"reason", reason},
                  {"message", message.substr(0, 1024)},
                  {"type", type},
                  {"source", {{"component", "zk0-operator"}}},
                  {"reportingComponent", "zk0.io/operator"},
                  {"reportingInstance", "zk0-operator"},
                  {"firstTimestamp", now},
                  {"lastTimestamp", now},
                  {"count", 1}};
  log_info("event", {kv(kind == "FederationRun" ? "run" : "membership", ns + "/" + m.value("name", "")), kv("type", type), kv("reason", reason), kv("message", message)});
  try {
    client.create("/api/v1/namespaces/" + ns + "/events", e);
  } catch (const kube::ApiError& err) {
    log_warn("event_not_recorded", {kv("reason", reason), kv("error", err.what())});  // events are best effort
  }
}

}  // namespace zk0::op
