#include "core/codec/error_feedback.h"

#include <filesystem>
#include <map>
#include <stdexcept>

#include "core/aggregation/parallel.h"
#include "core/codec/update_delta.h"
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
  if (residual_.tensors.empty()) return delta;
  try {
    return combine(delta, residual_, 1.0f, aggregation_threads());
  } catch (const std::exception& e) {
    throw std::runtime_error(path_ + ": the residual does not fit the update: " + e.what());
  }
}

void ErrorFeedback::keep(const ParameterSet& compensated, const ParameterSet& decoded) {
  ParameterSet residual = combine(compensated, decoded, -1.0f, aggregation_threads());
  if (!path_.empty()) write_safetensors(path_, residual, {{kCodecKey, codec_.describe()}});
  residual_ = std::move(residual);
}

}  // namespace zk0
