#pragma once
// What both kinds of round (coordinator.cpp, buffered_rounds.cpp) write into records and logs.
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/metrics/train_report.h"

namespace zk0 {

inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

inline double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// At most `limit` bytes of a string a client sent, for the logs, the status and the outputs.
inline std::string bounded(const std::string& s, size_t limit) {
  if (s.size() <= limit) return s;
  return s.substr(0, limit) + "...(" + std::to_string(s.size()) + " bytes)";
}

// What a round's record says of every update a rule used or discarded.
inline void add_update_fields(nlohmann::json& j, double weight, double distance_from_global, double clip_scale,
                              uint64_t bytes_uploaded, double upload_seconds) {
  j["weight"] = weight;
  j["distance_from_global"] = distance_from_global;
  if (clip_scale < 1) j["clip_scale"] = clip_scale;
  j["bytes_uploaded"] = bytes_uploaded;
  j["upload_seconds"] = upload_seconds;
}

inline nlohmann::json report_json(const TrainReport& r) {
  nlohmann::json j = {{"loss", r.loss},
          {"policy_loss", r.policy_loss},
          {"proximal_loss", r.proximal_loss},
          {"grad_norm", r.grad_norm},
          {"samples", r.samples},
          {"steps", r.steps},
          {"update_norm", r.update_norm},
          {"learning_rate", r.learning_rate},
          {"train_seconds", r.train_seconds},
          {"data_seconds", r.data_seconds},
          {"download_seconds", r.download_seconds},
          {"bytes_downloaded", r.bytes_downloaded}};
  if (r.privacy_epsilon) j["privacy_epsilon"] = *r.privacy_epsilon;
  return j;
}

}  // namespace zk0
