// zk0-aggregator: serves one FederationRun's rounds over gRPC until the last round is done.
//   zk0-aggregator --spec run.yaml [--listen 0.0.0.0:50051] [--port-file PATH] [--health-listen HOST:PORT]
// --health-listen adds a plaintext port that serves gRPC's health service alone, for Kubernetes'
// grpc probes, which cannot speak TLS (aggregator/health.h); without it there is none, and the
// health service answers on the federation port only.
#include <grpcpp/grpcpp.h>

#include <iostream>

#include "aggregator/coordinator.h"
#include "aggregator/enrollment.h"
#include "aggregator/grpc_metrics.h"
#include "aggregator/health.h"
#include "aggregator/service.h"
#include "aggregator/termination_message.h"
#include "core/metrics/metrics_server.h"
#include "core/runtime/cpu_runtime.h"
#include "core/transport/channel.h"
#include "core/util/fs.h"
#include "core/util/exit_codes.h"
#include "core/util/health_watch.h"
#include "core/util/log.h"
#include "core/util/stop_signals.h"

using namespace zk0;

namespace {
int usage() {
  std::cerr << "usage: zk0-aggregator --spec FILE [--listen HOST:PORT] [--port-file PATH]\n"
               "                      [--metrics-listen HOST:PORT] [--metrics-port-file PATH] [--health-listen HOST:PORT]\n"
               "                      [--termination-log PATH]\n";
  return kExitInvalidInput;
}
}  // namespace

int main(int argc, char** argv) {
  std::string spec_path, listen = "0.0.0.0:50051", port_file, metrics_listen = "0.0.0.0:9464", metrics_port_file, health_listen, termination_log;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    if (a == "--spec") spec_path = argv[++i];
    else if (a == "--listen") listen = argv[++i];
    else if (a == "--port-file") port_file = argv[++i];
    else if (a == "--metrics-listen") metrics_listen = argv[++i];
    else if (a == "--metrics-port-file") metrics_port_file = argv[++i];
    else if (a == "--health-listen") health_listen = argv[++i];
    else if (a == "--termination-log") termination_log = argv[++i];
    else return usage();
  }
  if (spec_path.empty()) return usage();
  set_log_component("aggregator");

  // Signals ask the coordinator to stop; the round loop ends at its next wait.
  StopSignals signals;

  try {
    const FederationSpec spec = load_spec(spec_path);
    configure_cpu_runtime(spec.aggregator.resources.cpu);
    // Health first, so that probes find the aggregator starting rather than absent.
    AggregatorHealth health;
    std::unique_ptr<grpc::Server> health_server;
    if (!health_listen.empty()) {
      int health_port = 0;
      health_server = health.serve_alone(health_listen, health_port);
      if (!health_server) {
        log_error("listen_failed", {kv("address", health_listen)});
        return kExitError;
      }
      log_info("health_listening", {kv("address", health_listen), kv("port", health_port)});
    }
    Coordinator coordinator(spec);
    MetricsServer metrics("aggregator", metrics_listen, {{"run", spec.name}});
    metrics.serve(coordinator.metrics_registry());
    metrics.serve_json("/status", [&coordinator] { return coordinator.status_json(); });
    metrics.serve_health("/healthz", [&health](std::string& why_not) { return health.live(why_not); });
    metrics.serve_health("/readyz", [&health](std::string& why_not) { return health.ready(why_not); });
    log_info("metrics_listening", {kv("address", metrics_listen), kv("port", metrics.port())});
    if (!metrics_port_file.empty()) write_file_atomic(metrics_port_file, std::to_string(metrics.port()) + "\n");
    FederationService service(coordinator, spec);
    auto grpc_registry = std::make_shared<prometheus::Registry>();
    GrpcServerMetrics grpc_metrics(*grpc_registry);
    metrics.serve(grpc_registry);
    grpc::ServerBuilder builder;
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
    interceptors.push_back(grpc_metrics.interceptor_factory());
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    int port = 0;
    builder.AddListeningPort(listen, make_server_credentials(spec.transport.tls, spec.has_remote_clients()), &port);
    configure_server_limits(builder, spec.transport);
    configure_server_hardening(builder, spec.clients.size());
    builder.RegisterService(&service);
    std::unique_ptr<EnrollmentService> enrollment;
    if (spec.has_remote_clients()) {
      enrollment = std::make_unique<EnrollmentService>(spec);
      builder.RegisterService(enrollment.get());
    }
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || port == 0) {
      log_error("listen_failed", {kv("address", listen)});
      return kExitError;
    }
    log_info("listening", {kv("address", listen), kv("port", port), kv("tls", spec.transport.tls.enabled()),
                           kv("mutual_tls", spec.transport.tls.mutual)});
    if (!port_file.empty()) write_file_atomic(port_file, std::to_string(port) + "\n");
    health.publish_to(*server);
    HealthWatch liveness([&coordinator] { return coordinator.loop_watchdog().stalled(); },
                         [&health](const std::string& why_not) { health.set_live(why_not); });

    health.set_ready("");
    signals.on_stop([&] {
      health.set_ready("stopping");
      coordinator.request_stop();
    });
    const int rc = coordinator.run();
    if (!termination_log.empty()) write_termination_message(termination_log, coordinator.status_json());
    // Workers still connected hear that the run is over; nothing new should come.
    health.set_ready("the run is over");
    service.end_transfers();
    coordinator.drain(std::chrono::seconds(5));
    service.shut_down();
    health.shut_down();
    const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
    server->Shutdown(deadline);
    if (health_server) health_server->Shutdown(deadline);
    signals.disarm();
    return rc;
  } catch (const SpecError& e) {
    std::cerr << "zk0-aggregator: invalid spec " << spec_path << ":\n" << e.what() << "\n";
    return kExitInvalidInput;
  } catch (const std::exception& e) {
    log_error("aggregator_failed", {kv("error", e.what())});
    return kExitError;
  }
}
