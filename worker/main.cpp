// zk0-worker: one client of a FederationRun, training on its own dataset.
//   zk0-worker --spec run.yaml --client NAME --aggregator HOST:PORT [--state-dir DIR] [--termination-log PATH]
//   zk0-worker join ...   as `zk0 join` (worker/join.h): a robot owner joining from this image
//   zk0-worker simulate ...   every client of the spec in this process (worker/simulation.h)
// --state-dir holds what must survive a restart of this worker (AdamW's moments when
// spec.training.optimizer.state is keep).
#include <fstream>
#include <iostream>
#include <thread>

#include "core/metrics/metrics_server.h"
#include "core/runtime/cpu_runtime.h"
#include "core/util/fs.h"
#include "core/util/exit_codes.h"
#include "core/util/health_watch.h"
#include "core/util/log.h"
#include "core/util/stop_signals.h"
#include "worker/client.h"
#include "worker/join.h"
#include "worker/simulation.h"

using namespace zk0;

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "join") return join_command(argc - 1, argv + 1);
  if (argc > 1 && std::string(argv[1]) == "simulate") return simulate_command(argc - 1, argv + 1);
  std::string spec_path, client, address, metrics_listen = "0.0.0.0:9465", metrics_port_file, state_dir, termination_log;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--spec") spec_path = argv[i + 1];
    else if (a == "--client") client = argv[i + 1];
    else if (a == "--aggregator") address = argv[i + 1];
    else if (a == "--metrics-listen") metrics_listen = argv[i + 1];
    else if (a == "--metrics-port-file") metrics_port_file = argv[i + 1];
    else if (a == "--state-dir") state_dir = argv[i + 1];
    else if (a == "--termination-log") termination_log = argv[i + 1];
    else spec_path.clear(), i = argc;
  }
  if (spec_path.empty() || client.empty() || address.empty() || argc % 2 == 0) {
    std::cerr << "usage: zk0-worker --spec FILE --client NAME --aggregator HOST:PORT\n"
                 "                  [--metrics-listen HOST:PORT] [--metrics-port-file PATH] [--state-dir DIR]\n"
                 "                  [--termination-log PATH]\n";
    return kExitInvalidInput;
  }
  set_log_component("worker/" + client);
  StopSignals signals;
  try {
    const FederationSpec spec = load_spec(spec_path);
    configure_cpu_runtime(spec.client(client).resources.cpu);
    // The health endpoint answers from the start: loading the policy is starting, not stuck.
    MetricsServer metrics("worker", metrics_listen, {{"run", spec.name}, {"client", client}});
    metrics.serve_health("/healthz", [](std::string&) { return true; });
    WorkerClient worker(spec, client, address, state_dir);
    metrics.serve(worker.metrics_registry());
    metrics.serve_json("/status", [contribution = worker.contribution()] { return contribution->json(); });
    if (!metrics_port_file.empty()) write_file_atomic(metrics_port_file, std::to_string(metrics.port()) + "\n");
    metrics.serve_health("/healthz", [progress = worker.progress()](std::string& why_not) {
      why_not = progress->stalled();
      return why_not.empty();
    });
    HealthWatch liveness([progress = worker.progress()] { return progress->stalled(); },
                         [](const std::string& why_not) { log_health_change("liveness", why_not); });
    signals.on_stop([&] { worker.request_stop(); });
    const int rc = worker.run();
    signals.disarm();
    // On Kubernetes what a finished worker delivered outlives it in its pod's status (its /status
    // has gone with it). A failure leaves the end of its log there instead, which says why.
    if (rc == kExitOk && !termination_log.empty()) {
      std::ofstream out(termination_log);
      out << worker.contribution()->json();
      if (!out) log_warn("termination_log_unwritten", {kv("path", termination_log)});
    }
    return rc;
  } catch (const SpecError& e) {
    std::cerr << "zk0-worker: invalid spec " << spec_path << ":\n" << e.what() << "\n";
    return kExitInvalidInput;
  } catch (const std::exception& e) {
    log_error("worker_failed", {kv("error", e.what())});
    return kExitError;
  }
}
