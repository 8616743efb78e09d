#pragma once
// Prometheus metrics of the aggregator's gRPC server in the go-grpc-prometheus convention that
// dashboards expect: grpc_server_started_total, grpc_server_handled_total{grpc_code} and
// grpc_server_handling_seconds, labelled grpc_service, grpc_method and grpc_type. A server
// interceptor, so every RPC is counted whatever its handler does.
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>

namespace zk0 {

class GrpcServerMetrics {
 public:
  explicit GrpcServerMetrics(prometheus::Registry& registry);
  // For ServerBuilder::experimental().SetInterceptorCreators; it must not outlive this object.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> interceptor_factory();

  prometheus::Family<prometheus::Counter>& started;
  prometheus::Family<prometheus::Counter>& handled;
  prometheus::Family<prometheus::Histogram>& handling_seconds;
};

}  // namespace zk0
