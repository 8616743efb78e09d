#pragma once
// What `zk0 dataset inspect` reports: the metadata, each episode's frames as the data files hold
// them, which videos exist, and every inconsistency between the files and the metadata.
#include <nlohmann/json.hpp>
#include <string>

#include "core/lerobot/metadata.h"

namespace zk0::lerobot {

// Reads every data file once. Problems go into report["problems"], one sentence each, naming the
// file and episode; an unreadable metadata folder throws instead.
nlohmann::json inspect_dataset(const Metadata& meta);

std::string format_report(const nlohmann::json& report);  // the human-readable form

}  // namespace zk0::lerobot
