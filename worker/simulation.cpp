#include "worker/simulation.h"

#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/metrics/metrics_server.h"
#include "core/runtime/cpu_runtime.h"
#include "core/util/exit_codes.h"
#include "core/util/fs.h"
#include "core/util/health_watch.h"
#include "core/util/log.h"
#include "core/util/stop_signals.h"
#include "worker/client.h"

namespace zk0 {

namespace {

int usage() {
  std::cerr << "usage: zk0-worker simulate --spec FILE --aggregator HOST:PORT --state-dir DIR [--concurrency K]\n"
               "                           [--metrics-listen HOST:PORT] [--metrics-port-file PATH]\n";
  return kExitInvalidInput;
}

}  // namespace

int simulate_command(int argc, char** argv) {
  std::string spec_path, address, state_dir, metrics_listen = "0.0.0.0:9465", metrics_port_file;
  std::string concurrency;  // as typed; empty: the spec's
  if (argc % 2 == 0) return usage();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--spec") spec_path = v;
    else if (a == "--aggregator") address = v;
    else if (a == "--state-dir") state_dir = v;
    else if (a == "--metrics-listen") metrics_listen = v;
    else if (a == "--metrics-port-file") metrics_port_file = v;
    else if (a == "--concurrency") concurrency = v;
    else return usage();
  }
  if (spec_path.empty() || address.empty() || state_dir.empty()) return usage();
  set_log_component("worker/simulation");
  StopSignals signals;
  try {
    const FederationSpec spec = load_spec(spec_path);
    const int training_at_once = simulation_concurrency(spec, concurrency);
    std::vector<const ClientSpec*> clients;
    for (const auto& c : spec.clients)
      if (!c.remote) clients.push_back(&c);
    configure_cpu_runtime(clients.front()->resources.cpu);

    MetricsServer metrics("worker", metrics_listen, {{"run", spec.name}});
    metrics.serve_health("/healthz", [](std::string&) { return true; });
    SharedWorkerParts shared;
    shared.registry = std::make_shared<prometheus::Registry>();
    shared.prefix_cache_metrics = std::make_shared<PrefixCacheMetrics>(*shared.registry);
    shared.dataset_opening = std::make_shared<std::mutex>();
  shared.held_globals = std::make_shared<HeldGlobals>();
    // Loaded once: the frozen weights of all the clients' policies.
    shared.policies = std::make_shared<PolicyPool>(spec, training_device(spec, *clients.front()), training_at_once);
    log_info("simulation_started", {kv("clients", clients.size()), kv("concurrency", training_at_once),
                                    kv("device", shared.policies->device().str())});
    std::vector<std::unique_ptr<WorkerClient>> workers;
    for (const ClientSpec* c : clients)
      workers.push_back(std::make_unique<WorkerClient>(spec, c->name, address, state_dir + "/" + c->name, shared));
    metrics.serve(shared.registry);
    metrics.serve_json("/status", [&workers] {
      nlohmann::json all = nlohmann::json::array();
      for (const auto& w : workers) all.push_back(nlohmann::json::parse(w->contribution()->json()));
      return all.dump();
    });
    const auto stalled = [&workers] {
      for (const auto& w : workers)
        if (std::string why = w->progress()->stalled(); !why.empty()) return why;
      return std::string();
    };
    metrics.serve_health("/healthz", [stalled](std::string& why_not) {
      why_not = stalled();
      return why_not.empty();
    });
    HealthWatch liveness(stalled, [](const std::string& why_not) { log_health_change("liveness", why_not); });
    if (!metrics_port_file.empty()) write_file_atomic(metrics_port_file, std::to_string(metrics.port()) + "\n");
    signals.on_stop([&] {
      for (auto& w : workers) w->request_stop();
    });
    std::vector<int> codes(workers.size(), kExitError);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < workers.size(); ++i)
      threads.emplace_back([&, i] {
        try {
          codes[i] = workers[i]->run();
        } catch (const std::exception& e) {
          log_error("worker_failed", {kv("client", workers[i]->name()), kv("error", e.what())});
        }
      });
    for (auto& t : threads) t.join();
    signals.disarm();
    int rc = kExitOk;
    for (size_t i = 0; i < workers.size(); ++i)
      if (codes[i] != kExitOk) {
        log_warn("client_ended", {kv("client", workers[i]->name()), kv("exit", codes[i])});
        if (rc == kExitOk) rc = codes[i];
      }
    log_info("simulation_finished", {kv("clients", workers.size()), kv("exit", rc)});
    return rc;
  } catch (const SpecError& e) {
    std::cerr << "zk0-worker simulate: invalid spec " << spec_path << ":\n" << e.what() << "\n";
    return kExitInvalidInput;
  } catch (const std::exception& e) {
    log_error("simulation_failed", {kv("error", e.what())});
    return kExitError;
  }
}

}  // namespace zk0
