#pragma once
// The simulation runtime: one process hosts every client of a run as a virtual client.
//   zk0-worker simulate --spec FILE --aggregator HOST:PORT --state-dir DIR [--concurrency K]
//                       [--metrics-listen HOST:PORT] [--metrics-port-file PATH]
// Each virtual client is a WorkerClient of its own (its name, its certificate, its dataset,
// sampler, normalisation statistics and seed, its state under DIR/<client>), talking to the
// aggregator over gRPC like a separate process would; all of them train on one PolicyPool of K
// policies that share the frozen weights, so K clients train at a time (spec.simulation.concurrency,
// overridden by --concurrency). One metrics endpoint serves every client's series, labelled
// with its name; /status lists every client's contribution.
namespace zk0 {

int simulate_command(int argc, char** argv);

}  // namespace zk0
