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
const char* const kBaseKey = "zk0.base";
const std::string kBeforePrefix = "zk0.before/";  // the residual before kept_base_'s, in the same file
}

ErrorFeedback::ErrorFeedback(std::string path, CodecSettings codec) : path_(std::move(path)), codec_(std::move(codec)) {
  if (path_.empty() || !std::filesystem::exists(path_)) return;
  std::map<std::string, std::string> metadata;
  ParameterSet stored = read_safetensors(path_, &metadata);
  const auto it = metadata.find(kCodecKey);
  if (it == metadata.end() || it->second != codec_.describe())
    throw std::runtime_error(path_ + ": an error-feedback residual of codec '" + (it == metadata.end() ? std::string("?") : it->second) +
                             "', not of this run's '" + codec_.describe() + "' (delete it to start without one)");
  if (const auto base = metadata.find(kBaseKey); base != metadata.end()) kept_base_ = base->second;
  for (auto& t : stored.tensors) {
    if (t.name.rfind(kBeforePrefix, 0) == 0) {
      t.name = t.name.substr(kBeforePrefix.size());
      before_.tensors.push_back(std::move(t));
    } else {
      residual_.tensors.push_back(std::move(t));
    }
  }
}

void ErrorFeedback::begin(const std::string& base) {
  base_ = base;
  if (!base.empty() && base == kept_base_) residual_ = before_;
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
  if (!base_.empty()) {
    before_ = std::move(residual_);
    kept_base_ = base_;
  }
  if (!path_.empty()) {
    // One file, written atomically: the residual and the one it replaced always belong together.
    ParameterSet stored = residual;
    for (const auto& t : before_.tensors) {
      Tensor copy = t;
      copy.name = kBeforePrefix + t.name;
      stored.tensors.push_back(std::move(copy));
    }
    std::map<std::string, std::string> metadata = {{kCodecKey, codec_.describe()}};
    if (!kept_base_.empty()) metadata[kBaseKey] = kept_base_;
    write_safetensors(path_, stored, metadata);
  }
  residual_ = std::move(residual);
}

}  // namespace zk0
