#pragma once
// The services the aggregator's gRPC health service (grpc.health.v1.Health) reports on, named
// once for the aggregator, the probes the operator renders and the tests. What each means is in
// aggregator/health.h.
namespace zk0 {

struct AggregatorHealthServices {
  static constexpr const char* kReadiness = "zk0.v1.Federation";  // takes federation traffic
  static constexpr const char* kLiveness = "liveness";            // the round loop is not wedged
};

}  // namespace zk0
