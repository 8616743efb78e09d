#include "aggregator/grpc_metrics.h"

#include <chrono>
#include <map>
#include <string>

#include "core/metrics/metrics_server.h"

namespace zk0 {

namespace {

using Hook = grpc::experimental::InterceptionHookPoints;

const char* code_name(grpc::StatusCode code) {
  static const std::map<grpc::StatusCode, const char*> names{
      {grpc::OK, "OK"}, {grpc::CANCELLED, "Canceled"}, {grpc::UNKNOWN, "Unknown"},
      {grpc::INVALID_ARGUMENT, "InvalidArgument"}, {grpc::DEADLINE_EXCEEDED, "DeadlineExceeded"},
      {grpc::NOT_FOUND, "NotFound"}, {grpc::ALREADY_EXISTS, "AlreadyExists"},
      {grpc::PERMISSION_DENIED, "PermissionDenied"}, {grpc::RESOURCE_EXHAUSTED, "ResourceExhausted"},
      {grpc::FAILED_PRECONDITION, "FailedPrecondition"}, {grpc::ABORTED, "Aborted"},
      {grpc::OUT_OF_RANGE, "OutOfRange"}, {grpc::UNIMPLEMENTED, "Unimplemented"}, {grpc::INTERNAL, "Internal"},
      {grpc::UNAVAILABLE, "Unavailable"}, {grpc::DATA_LOSS, "DataLoss"}, {grpc::UNAUTHENTICATED, "Unauthenticated"}};
  auto it = names.find(code);
  return it == names.end() ? "Unknown" : it->second;
}

const char* type_name(grpc::experimental::ServerRpcInfo::Type type) {
  switch (type) {
    case grpc::experimental::ServerRpcInfo::Type::UNARY: return "unary";
    case grpc::experimental::ServerRpcInfo::Type::CLIENT_STREAMING: return "client_stream";
    case grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING: return "server_stream";
    case grpc::experimental::ServerRpcInfo::Type::BIDI_STREAMING: return "bidi_stream";
  }
  return "unary";
}

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(GrpcServerMetrics& metrics, grpc::experimental::ServerRpcInfo* info) : metrics_(metrics) {
    const std::string full = info->method() ? info->method() : "/unknown/unknown";  // "/package.Service/Method"
    const auto slash = full.rfind('/');
    labels_ = {{"grpc_service", full.substr(1, slash - 1)}, {"grpc_method", full.substr(slash + 1)}, {"grpc_type", type_name(info->type())}};
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_INITIAL_METADATA)) {
      start_ = std::chrono::steady_clock::now();
      metrics_.started.Add(labels_).Increment();
    }
    if (methods->QueryInterceptionHookPoint(Hook::PRE_SEND_STATUS)) {
      auto labels = labels_;
      labels["grpc_code"] = code_name(methods->GetSendStatus().error_code());
      metrics_.handled.Add(labels).Increment();
      metrics_.handling_seconds.Add(labels_, duration_buckets())
          .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    }
    methods->Proceed();
  }

 private:
  GrpcServerMetrics& metrics_;
  std::map<std::string, std::string> labels_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace

GrpcServerMetrics::GrpcServerMetrics(prometheus::Registry& registry)
    : started(prometheus::BuildCounter().Name("grpc_server_started_total").Help("RPCs started on the server").Register(registry)),
      handled(prometheus::BuildCounter()
                  .Name("grpc_server_handled_total")
                  .Help("RPCs completed on the server, by status code")
                  .Register(registry)),
      handling_seconds(prometheus::BuildHistogram()
                           .Name("grpc_server_handling_seconds")
                           .Help("Time from an RPC's start until the server sent its status")
                           .Register(registry)) {}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> GrpcServerMetrics::interceptor_factory() {
  struct Factory : grpc::experimental::ServerInterceptorFactoryInterface {
    explicit Factory(GrpcServerMetrics& m) : metrics(m) {}
    grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
      return new MetricsInterceptor(metrics, info);
    }
    GrpcServerMetrics& metrics;
  };
  return std::make_unique<Factory>(*this);
}

}  // namespace zk0
