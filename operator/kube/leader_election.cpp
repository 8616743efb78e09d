#include "operator/kube/leader_election.h"

#include <thread>

#include "core/util/log.h"
#include "operator/kube/time_format.h"

namespace zk0::kube {

namespace {

using Clock = std::chrono::system_clock;

bool sleep_unless_stopped(std::chrono::milliseconds d, const std::atomic<bool>& stop) {
  for (auto waited = std::chrono::milliseconds(0); waited < d && !stop; waited += std::chrono::milliseconds(50))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return !stop;
}

}  // namespace

LeaderElector::LeaderElector(KubeClient& client, LeaseSettings settings) : client_(client), settings_(std::move(settings)) {}

std::string LeaderElector::lease_path() const {
  return "/apis/coordination.k8s.io/v1/namespaces/" + settings_.namespace_ + "/leases";
}

bool LeaderElector::try_acquire_or_renew() {
  const std::string now = rfc3339_now(true);
  nlohmann::json lease;
  try {
    lease = client_.get(lease_path() + "/" + settings_.name);
  } catch (const ApiError& e) {
    if (!e.not_found()) throw;
    const nlohmann::json fresh = {
        {"apiVersion", "coordination.k8s.io/v1"},
        {"kind", "Lease"},
        {"metadata", {{"name", settings_.name}, {"namespace", settings_.namespace_}}},
        {"spec",
         {{"holderIdentity", settings_.identity},
          {"leaseDurationSeconds", settings_.lease_duration.count()},
          {"acquireTime", now},
          {"renewTime", now},
          {"leaseTransitions", 0}}}};
    try {
      client_.create(lease_path(), fresh);
      return true;
    } catch (const ApiError& ce) {
      if (ce.conflict()) return false;  // another candidate created it first
      throw;
    }
  }
  auto& spec = lease["spec"];
  const std::string holder = spec.value("holderIdentity", "");
  const bool mine = holder == settings_.identity;
  if (!mine && !holder.empty()) {
    const auto renewed = parse_rfc3339(spec.value("renewTime", ""));
    const auto duration = std::chrono::seconds(spec.value("leaseDurationSeconds", 15));
    if (Clock::now() < renewed + duration) return false;  // held and fresh
  }
  if (!mine) {
    spec["acquireTime"] = now;
    spec["leaseTransitions"] = spec.value("leaseTransitions", 0) + 1;
  }
  spec["holderIdentity"] = settings_.identity;
  spec["leaseDurationSeconds"] = settings_.lease_duration.count();
  spec["renewTime"] = now;
  try {
    client_.replace(lease_path() + "/" + settings_.name, lease);  // carries resourceVersion
    return true;
  } catch (const ApiError& e) {
    if (e.conflict()) return false;  // someone else wrote it since we read it
    throw;
  }
}

bool LeaderElector::acquire(const std::atomic<bool>& stop) {
  log_info("leader_election_started", {kv("lease", settings_.namespace_ + "/" + settings_.name), kv("identity", settings_.identity)});
  while (!stop) {
    try {
      if (try_acquire_or_renew()) {
        log_info("leader_elected", {kv("identity", settings_.identity)});
        return true;
      }
    } catch (const ApiError& e) {
      log_warn("lease_error", {kv("error", e.what())});
    }
    if (!sleep_unless_stopped(settings_.retry_period, stop)) break;
  }
  return false;
}

bool LeaderElector::hold(const std::atomic<bool>& stop) {
  auto last_renew = std::chrono::steady_clock::now();
  while (sleep_unless_stopped(settings_.retry_period, stop)) {
    bool renewed = false;
    try {
      renewed = try_acquire_or_renew();
    } catch (const ApiError& e) {
      log_warn("lease_renew_failed", {kv("error", e.what())});
    }
    if (renewed) last_renew = std::chrono::steady_clock::now();
    else if (std::chrono::steady_clock::now() - last_renew > settings_.renew_deadline) {
      log_error("leader_lost", {kv("identity", settings_.identity)});
      return false;
    }
  }
  release();
  return true;
}

void LeaderElector::release() {
  try {
    auto lease = client_.get(lease_path() + "/" + settings_.name);
    if (lease["spec"].value("holderIdentity", "") != settings_.identity) return;
    lease["spec"]["holderIdentity"] = "";
    lease["spec"]["leaseDurationSeconds"] = 1;
    lease["spec"]["renewTime"] = rfc3339_now(true);
    client_.replace(lease_path() + "/" + settings_.name, lease);
    log_info("leader_released", {kv("identity", settings_.identity)});
  } catch (const ApiError& e) {
    log_warn("lease_release_failed", {kv("error", e.what())});
  }
}

}  // namespace zk0::kube
