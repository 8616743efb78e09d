#pragma once
// The aggregator's health as Kubernetes' probes read it: gRPC's standard health service
// (grpc.health.v1.Health, Check and Watch; grpc's own implementation) on every server the
// aggregator runs, with two services of our own (core/transport/health_services.h) kept
// identical on all of them:
//
//   zk0.v1.Federation  readiness. SERVING while the aggregator takes federation traffic: from
//                      the moment its checkpoint is restored and the federation port listens
//                      until the run ends or a stop is asked for; NOT_SERVING while it starts
//                      (loads, restores), once a stop is asked for, and while it drains after the
//                      run.
//   liveness           SERVING unless the round loop is wedged: armed, it has not come back to
//                      check its deadlines for longer than spec.strategy.roundTimeoutSeconds
//                      (Coordinator::loop_watchdog()). Startup is not watched (its failures end
//                      the process); drain and shutdown end within seconds.
//   ""                 grpc's own: SERVING while the server runs.
//
// Any other service name answers NOT_FOUND. Kubernetes' grpc probes speak plaintext h2c, while
// the federation port is TLS in production: serve_alone() serves the health service, and nothing
// else, on a plaintext port for them. At shutdown every service turns NOT_SERVING for good. Each
// change is logged (event=health_changed check=readiness|liveness).
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/transport/health_services.h"

namespace zk0 {

class AggregatorHealth {
 public:
  // Makes every gRPC server built from now on carry grpc's default health service. Not ready
  // (starting), live.
  AggregatorHealth();

  // A server built after this object: from now on it reports this health.
  void publish_to(grpc::Server& server);
  // A plaintext server with the health service alone, reporting this health; nullptr when
  // `address` cannot be bound. `port` receives the bound port (address may ask for port 0). This
  // object must outlive the server.
  std::unique_ptr<grpc::Server> serve_alone(const std::string& address, int& port);
  // Empty: ready (or live); otherwise why not.
  void set_ready(const std::string& why_not);
  void set_live(const std::string& why_not);
  // For the HTTP /readyz and /healthz: true when healthy, else false with the reason.
  bool ready(std::string& why_not) const;
  bool live(std::string& why_not) const;
  // The servers are about to stop: every service NOT_SERVING, and no change after this.
  void shut_down();

 private:
  void publish(grpc::Server& server);  // requires mu_
  // Sets `reason` (not_ready_ or not_live_) for `check`, logs and publishes the change; requires mu_.
  void change(std::string& reason, const char* check, const std::string& why_not);

  grpc::CallbackGenericService unimplemented_;  // serve_alone's servers answer anything else with it
  mutable std::mutex mu_;
  std::vector<grpc::Server*> servers_;
  std::string not_ready_ = "starting: loading the policy, the evaluation dataset and the latest checkpoint", not_live_;
  bool shut_down_ = false;
};

}  // namespace zk0
