// zk0: the command line of zk0.
//   zk0 run FILE.yaml [--fresh] [--listen HOST:PORT] [--simulate] [--concurrency K]
//                                   run a FederationRun on this machine
//   zk0 join --endpoint ... --token ... --dataset ...   join a run as its remote client
//   zk0 validate FILE.yaml          check a spec and print it with every default filled in
//   zk0 aggregate FILE.yaml ...     apply a spec's strategy to update files
//   zk0 dataset inspect PATH        look into a LeRobot dataset
//   zk0 policy run ...              run a SmolVLA checkpoint on recorded inputs
//   zk0 privacy epsilon|noise ...   the privacy accountant, to plan a run
//   zk0 ledger verify OUTPUT_DIR    check a run's contribution ledger
#include <iostream>
#include <string>

#include "cli/aggregate_command.h"
#include "cli/dataset_command.h"
#include "cli/ledger_command.h"
#include "worker/join.h"
#include "cli/local_runtime.h"
#include "cli/policy_command.h"
#include "cli/privacy_command.h"
#include "core/data/partition.h"
#include "core/util/exit_codes.h"
#include "core/spec/federation_spec.h"

using namespace zk0;

namespace {
int usage() {
  std::cerr << "usage:\n"
               "  zk0 run FILE.yaml [--fresh] [--listen HOST:PORT] [--simulate] [--concurrency K]\n"
               "                                run a FederationRun locally (aggregator + one worker per client;\n"
               "                                remote clients join with the token written to OUTPUT/join/);\n"
               "                                --simulate: every client in one worker process, K training at a time\n"
               "  zk0 join --endpoint HOST:PORT (--token TOKEN | --token-file PATH) --dataset PATH [--device cpu|cuda] [--state-dir DIR]\n"
               "                                join a run as the remote client the token names\n"
               "  zk0 validate FILE.yaml        check a FederationRun and print it resolved\n"
               "  zk0 aggregate FILE.yaml --global G.safetensors --update NAME=U.safetensors... --output OUT.safetensors\n"
               "                [--weight NAME=W...]  apply the spec's aggregation rule to update files\n"
               "  zk0 dataset inspect PATH [--json]  look into a LeRobot dataset (v2.1, v3.0)\n"
               "  zk0 policy run --pretrained DIR --inputs IN.safetensors --output OUT.safetensors\n"
               "                                run a SmolVLA checkpoint on recorded inputs\n"
               "  zk0 privacy epsilon --sampling-rate Q --noise-multiplier Z --rounds T --delta D\n"
               "  zk0 privacy noise --sampling-rate Q --target-epsilon E --rounds T --delta D\n"
               "                                epsilon after T rounds of strategy.privacy, or the noise a target needs\n"
               "  zk0 ledger verify OUTPUT_DIR [--ca CA.pem] [--checkpoint-key FILE] [--recompute]\n"
               "                                check a run's contribution ledger against its signatures and checkpoints\n";
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string command = argv[1];
  if (command == "dataset") return dataset_command(argc - 1, argv + 1);
  if (command == "aggregate") return aggregate_command(argc - 1, argv + 1);
  if (command == "policy") return policy_command(argc - 1, argv + 1);
  if (command == "join") return join_command(argc - 1, argv + 1);
  if (command == "privacy") return privacy_command(argc - 1, argv + 1);
  if (command == "ledger") return ledger_command(argc - 1, argv + 1);
  if (command == "validate" && argc == 3) {
    try {
      const FederationSpec spec = load_spec(argv[2]);
      if (const auto problems = partition_problems(spec); !problems.empty()) throw SpecError(problems);
      std::cout << to_yaml(spec);
      return 0;
    } catch (const SpecError& e) {
      std::cerr << argv[2] << ":\n" << e.what() << "\n";
      return 2;
    }
  }
  if (command == "run") {
    LocalRunOptions options{argv[2]};
    for (int i = 3; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--fresh") options.fresh = true;
      else if (a == "--listen" && i + 1 < argc) options.listen = argv[++i];
      else if (a == "--simulate") options.simulate = true;
      else if (a == "--concurrency" && i + 1 < argc) {
        options.simulate = true;
        options.concurrency = argv[++i];  // checked against the spec by run_locally
      } else return usage();
    }
    return run_locally(options);
  }
  return usage();
}
