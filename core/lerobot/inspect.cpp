#include "core/lerobot/inspect.h"

#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "core/lerobot/parquet_table.h"

namespace zk0::lerobot {
namespace fs = std::filesystem;
using nlohmann::json;

json inspect_dataset(const Metadata& meta) {
  json report;
  std::vector<std::string> problems;
  report["root"] = meta.root;
  report["version"] = meta.version;
  report["robot_type"] = meta.robot_type;
  report["fps"] = meta.fps;
  report["total_episodes"] = meta.total_episodes;
  report["total_frames"] = meta.total_frames;
  report["total_tasks"] = meta.total_tasks;
  report["features"] = json::array();
  for (const auto& f : meta.features) {
    json j = {{"key", f.key}, {"dtype", f.dtype}, {"shape", f.shape}};
    if (!f.names.empty()) j["names"] = f.names;
    if (!f.codec.empty()) j["codec"] = f.codec;
    report["features"].push_back(j);
  }
  report["cameras"] = meta.cameras();
  report["tasks"] = json::object();
  for (const auto& [i, t] : meta.tasks) report["tasks"][std::to_string(i)] = t;
  if (static_cast<int64_t>(meta.tasks.size()) != meta.total_tasks)
    problems.push_back("meta/info.json: total_tasks is " + std::to_string(meta.total_tasks) + " but " +
                       std::to_string(meta.tasks.size()) + " tasks are listed");

  // Frames per episode as the data files hold them; each file is read once.
  std::map<std::string, std::vector<const EpisodeMeta*>> by_file;
  for (const auto& e : meta.episodes) by_file[meta.data_file(e)].push_back(&e);
  std::map<int64_t, int64_t> rows;
  std::set<int64_t> bad_index;
  for (const auto& [file, episodes] : by_file) {
    if (!fs::exists(file)) {
      for (const auto* e : episodes) problems.push_back(file + ": missing (episode " + std::to_string(e->index) + ")");
      continue;
    }
    try {
      const ParquetColumns t = read_parquet_columns(file, {{"episode_index", ColumnKind::Int64}, {"index", ColumnKind::Int64}});
      const auto& ep = t.ints.at("episode_index");
      const auto& index = t.ints.at("index");
      std::map<int64_t, int64_t> next;  // the global index each episode's next row must carry
      for (const auto* e : episodes) next[e->index] = e->from;
      for (int64_t r = 0; r < t.rows; ++r) {
        ++rows[ep[r]];
        auto it = next.find(ep[r]);
        if (it == next.end()) {
          problems.push_back(file + ": holds rows of episode " + std::to_string(ep[r]) + ", which the episode table places elsewhere");
          next[ep[r]] = index[r];
        } else if (index[r] != it->second && bad_index.insert(ep[r]).second) {
          problems.push_back(file + ": episode " + std::to_string(ep[r]) + " row index " + std::to_string(index[r]) +
                             " where " + std::to_string(it->second) + " was expected");
        }
        ++next[ep[r]];
      }
    } catch (const std::exception& ex) {
      problems.push_back(ex.what());
    }
  }
  int64_t total_rows = 0;
  report["episodes"] = json::array();
  const auto cameras = meta.cameras();
  std::map<std::string, int> missing_videos;
  for (const auto& e : meta.episodes) {
    json j = {{"index", e.index}, {"length", e.length}, {"frames", {e.from, e.to}}, {"tasks", e.tasks},
              {"rows", rows.count(e.index) ? rows[e.index] : 0}};
    total_rows += j["rows"].get<int64_t>();
    if (j["rows"] != e.length && fs::exists(meta.data_file(e)))
      problems.push_back(meta.data_file(e) + ": episode " + std::to_string(e.index) + " has " + j["rows"].dump() +
                         " rows, the episode table says " + std::to_string(e.length));
    for (const auto& cam : cameras) {
      const bool present = fs::exists(meta.video_file(e, cam));
      j["videos"][cam] = present ? "present" : "missing";
      if (!present) ++missing_videos[cam];
    }
    if (!meta.episode_stats.count(e.index)) problems.push_back("episode " + std::to_string(e.index) + ": no statistics");
    report["episodes"].push_back(j);
  }
  for (const auto& [cam, n] : missing_videos)
    problems.push_back(cam + ": video missing for " + std::to_string(n) + " of " + std::to_string(meta.episodes.size()) + " episodes");
  if (total_rows != meta.total_frames)
    problems.push_back("meta/info.json: total_frames is " + std::to_string(meta.total_frames) + " but the data files hold " +
                       std::to_string(total_rows) + " rows");
  report["problems"] = problems;
  return report;
}

std::string format_report(const json& r) {
  std::ostringstream out;
  out << r["root"].get<std::string>() << "\n"
      << "  version " << r["version"].get<std::string>() << ", robot " << r["robot_type"].get<std::string>() << ", "
      << r["fps"] << " fps, " << r["total_episodes"] << " episodes, " << r["total_frames"] << " frames, "
      << r["total_tasks"] << " tasks\n  features:\n";
  for (const auto& f : r["features"]) {
    out << "    " << f["key"].get<std::string>() << "  " << f["dtype"].get<std::string>() << f["shape"].dump();
    if (f.contains("codec")) out << "  " << f["codec"].get<std::string>();
    out << "\n";
  }
  out << "  tasks:\n";
  for (const auto& [i, t] : r["tasks"].items()) out << "    " << i << ": " << t.get<std::string>() << "\n";
  out << "  episodes (index: length [from, to) rows):\n";
  for (const auto& e : r["episodes"]) {
    out << "    " << e["index"] << ": " << e["length"] << " [" << e["frames"][0] << ", " << e["frames"][1] << ") " << e["rows"];
    if (e.contains("videos"))
      for (const auto& [cam, state] : e["videos"].items())
        if (state == "missing") out << "  no " << cam;
    out << "\n";
  }
  out << "  problems: " << (r["problems"].empty() ? "none" : std::to_string(r["problems"].size())) << "\n";
  for (const auto& p : r["problems"]) out << "    " << p.get<std::string>() << "\n";
  return out.str();
}

}  // namespace zk0::lerobot
