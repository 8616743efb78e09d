#include "core/codec/error_feedback.h"

#include <filesystem>
#include <map>
#include <stdexcept>

#include "core/aggregation/parallel.h"
#include "core/tensor/safetensors.h"

namespace zk0 {
namespace {
const char* const kCodecKey = "zk0.codec";
}

ErrorFeedback::ErrorFeedback(std::string path, CodecSettings codec) : path_(std::move(path)), codec_(std::move(codec)) {
  if (path_.empty() || !std::filesystem::exists(path_)) return;
  std::map<std::string, std::string> metadata;
  residual_ = read_safetensors(path_, &metadata);
  const auto it = metadata.find(kCodecKey);
  if (it == metadata.end() || it->second != codec_.describe())
    throw std::runtime_error(path_ + ": an error-feedback residual of codec '" + (it == metadata.end() ? std::string("?") : it->second) +
                             "', not of this run's '" + codec_.describe() + "' (delete it to start without one)");
}

ParameterSet ErrorFeedback::compensate(const ParameterSet& delta) const {
  ParameterSet out = delta;
  if (residual_.tensors.empty()) return out;
  if (residual_.tensors.size() != delta.tensors.size())
    throw std::runtime_error(path_ + ": the residual has " + std::to_string(residual_.tensors.size()) + " tensors, the update " +
                             std::to_string(delta.tensors.size()));
  for (size_t i = 0; i < out.tensors.size(); ++i) {
    Tensor& t = out.tensors[i];
    const Tensor& r = residual_.tensors[i];
    if (r.name != t.name || r.dtype != DType::F32 || t.dtype != DType::F32 || r.shape != t.shape)
      throw std::runtime_error(path_ + ": residual tensor '" + r.name + "' does not match the update's '" + t.name + "'");
    float* x = t.as<float>();
    const float* e = r.as<float>();
    parallel_for(static_cast<size_t>(t.numel()), aggregation_threads(), [&](size_t b, size_t end) {
      for (size_t j = b; j < end; ++j) x[j] += e[j];
    });
  }
  return out;
}

void ErrorFeedback::keep(const ParameterSet& compensated, const ParameterSet& decoded) {
  ParameterSet residual = compensated;
  for (size_t i = 0; i < residual.tensors.size(); ++i) {
    float* x = residual.tensors[i].as<float>();
    const float* d = decoded.tensors.at(i).as<float>();
    parallel_for(static_cast<size_t>(residual.tensors[i].numel()), aggregation_threads(), [&](size_t b, size_t end) {
      for (size_t j = b; j < end; ++j) x[j] -= d[j];
    });
  }
  if (!path_.empty()) write_safetensors(path_, residual, {{kCodecKey, codec_.describe()}});
  residual_ = std::move(residual);
}

}  // namespace zk0
