// zk0-byzantine-worker: test-only; built with the tests, never installed or put in an image.
// Plays the Byzantine clients of a run, colluding in one process, over the same gRPC protocol
// as zk0-worker (it is zk0-worker's client with each update rewritten before it is uploaded):
//   zk0-byzantine-worker --spec run.yaml --aggregator HOST:PORT --clients a,b --attack NAME[:STRENGTH]
//                        --state-dir DIR
// Attacks: tests/attack/adversary.h.
#include <iostream>
#include <sstream>
#include <thread>

#include "attack/colluders.h"
#include "core/runtime/cpu_runtime.h"
#include "core/util/exit_codes.h"
#include "core/util/log.h"
#include "core/util/stop_signals.h"
#include "worker/client.h"

using namespace zk0;

int main(int argc, char** argv) {
  std::string spec_path, address, client_list, attack_text, state_dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--spec") spec_path = argv[i + 1];
    else if (a == "--aggregator") address = argv[i + 1];
    else if (a == "--clients") client_list = argv[i + 1];
    else if (a == "--attack") attack_text = argv[i + 1];
    else if (a == "--state-dir") state_dir = argv[i + 1];
    else spec_path.clear(), i = argc;
  }
  if (spec_path.empty() || address.empty() || client_list.empty() || attack_text.empty() || state_dir.empty() ||
      argc % 2 == 0) {
    std::cerr << "usage: zk0-byzantine-worker --spec FILE --aggregator HOST:PORT --clients A,B --attack NAME[:STRENGTH]\n"
                 "                            --state-dir DIR\n";
    return kExitInvalidInput;
  }
  set_log_component("byzantine");
  StopSignals signals;
  try {
    const FederationSpec spec = load_spec(spec_path);
    std::vector<std::string> names;
    std::stringstream list(client_list);
    for (std::string name; std::getline(list, name, ',');) names.push_back(name);
    const test::Attack attack = test::parse_attack(attack_text, static_cast<int>(spec.clients.size()), static_cast<int>(names.size()));
    configure_cpu_runtime(spec.client(names[0]).resources.cpu);
    test::Colluders colluders(spec, names, attack, state_dir);
    std::vector<std::unique_ptr<WorkerClient>> workers;
    for (const auto& name : names) {
      workers.push_back(std::make_unique<WorkerClient>(spec, name, address, state_dir + "/" + name));
      workers.back()->before_upload([&colluders, name](const RoundTask& task, const ParameterSet& global, RoundResult& r) {
        colluders.craft(name, task, global, r);
      });
    }
    signals.on_stop([&] {
      for (auto& w : workers) w->request_stop();
    });
    std::vector<int> codes(workers.size(), 1);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < workers.size(); ++i) threads.emplace_back([&, i] { codes[i] = workers[i]->run(); });
    for (auto& t : threads) t.join();
    signals.disarm();
    return *std::max_element(codes.begin(), codes.end());
  } catch (const SpecError& e) {
    std::cerr << "zk0-byzantine-worker: invalid spec " << spec_path << ":\n" << e.what() << "\n";
    return kExitInvalidInput;
  } catch (const std::exception& e) {
    log_error("byzantine_worker_failed", {kv("error", e.what())});
    return kExitError;
  }
}
