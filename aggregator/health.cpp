#include "aggregator/health.h"

#include <grpcpp/health_check_service_interface.h>

#include "core/util/health_watch.h"

namespace zk0 {

AggregatorHealth::AggregatorHealth() { grpc::EnableDefaultHealthCheckService(true); }

void AggregatorHealth::publish(grpc::Server& server) {
  grpc::HealthCheckServiceInterface* service = server.GetHealthCheckService();
  if (!service) throw std::logic_error("a gRPC server built before AggregatorHealth has no health service");
  if (shut_down_) return service->Shutdown();
  service->SetServingStatus(AggregatorHealthServices::kReadiness, not_ready_.empty());
  service->SetServingStatus(AggregatorHealthServices::kLiveness, not_live_.empty());
}

void AggregatorHealth::publish_to(grpc::Server& server) {
  std::lock_guard<std::mutex> lock(mu_);
  servers_.push_back(&server);
  publish(server);
}

void AggregatorHealth::change(std::string& reason, const char* check, const std::string& why_not) {
  if (why_not == reason) return;
  reason = why_not;
  log_health_change(check, why_not);
  for (grpc::Server* s : servers_) publish(*s);
}

void AggregatorHealth::set_ready(const std::string& why_not) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!shut_down_) change(not_ready_, "readiness", why_not);
}

void AggregatorHealth::set_live(const std::string& why_not) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!shut_down_) change(not_live_, "liveness", why_not);
}

bool AggregatorHealth::ready(std::string& why_not) const {
  std::lock_guard<std::mutex> lock(mu_);
  why_not = not_ready_;
  return why_not.empty();
}

bool AggregatorHealth::live(std::string& why_not) const {
  std::lock_guard<std::mutex> lock(mu_);
  why_not = not_live_;
  return why_not.empty();
}

void AggregatorHealth::shut_down() {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) return;
  shut_down_ = true;
  change(not_ready_, "readiness", "shutting down");
  change(not_live_, "liveness", "shutting down");
}

std::unique_ptr<grpc::Server> AggregatorHealth::serve_alone(const std::string& address, int& port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  // gRPC builds no server without a service of its own, and adds the health service only as it
  // starts: the base generic service, which answers every other method UNIMPLEMENTED, is that
  // service.
  builder.RegisterCallbackGenericService(&unimplemented_);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return nullptr;
  publish_to(*server);
  return server;
}

}  // namespace zk0
