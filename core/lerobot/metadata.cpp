#include "core/lerobot/metadata.h"
#include "core/util/json_number.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "core/lerobot/parquet_table.h"
#include "core/util/fs.h"

namespace zk0::lerobot {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& file, const std::string& what) { throw std::runtime_error(file + ": " + what); }

json parse_json_file(const std::string& path) {
  if (!fs::exists(path)) fail(path, "missing");
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail(path, std::string("not valid JSON: ") + e.what());
  }
}

std::vector<json> parse_jsonl(const std::string& path) {
  if (!fs::exists(path)) fail(path, "missing");
  std::ifstream in(path);
  std::vector<json> lines;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      lines.push_back(json::parse(line));
    } catch (const json::exception& e) {
      fail(path, "line " + std::to_string(number) + " is not valid JSON: " + e.what());
    }
  }
  return lines;
}

void flatten_names(const json& j, std::vector<std::string>& out) {
  if (j.is_string()) out.push_back(j.get<std::string>());
  else if (j.is_array())
    for (const auto& v : j) flatten_names(v, out);
  else if (j.is_object())
    for (const auto& [k, v] : j.items()) flatten_names(v, out);
}

std::vector<double> doubles(const json& j) {
  std::vector<double> out;
  if (j.is_number()) out.push_back(j.get<double>());
  else
    for (const auto& v : j) {
      if (!v.is_number()) return {};
      out.push_back(v.get<double>());
    }
  return out;
}

Stats stats_from_json(const json& j, const std::string& where) {
  Stats s;
  try {
    s.min = doubles(j.at("min"));
    s.max = doubles(j.at("max"));
    s.mean = doubles(j.at("mean"));
    s.std = doubles(j.at("std"));
    const json& count = j.at("count");
    s.count = json_integer(count.is_array() ? count.at(0) : count);
  } catch (const json::exception& e) {
    throw std::runtime_error(where + ": " + e.what());
  }
  return s;
}

bool is_vector_feature(const Feature& f) { return f.dtype == "float32" || f.dtype == "float64"; }

void read_v21(Metadata& m) {
  const std::string meta = m.root + "/meta/";
  int64_t next_from = 0;
  for (const auto& line : parse_jsonl(meta + "episodes.jsonl")) {
    EpisodeMeta e;
    try {
      e.index = json_integer(line.at("episode_index"));
      e.length = json_integer(line.at("length"));
      e.tasks = line.value("tasks", std::vector<std::string>{});
    } catch (const json::exception& ex) {
      fail(meta + "episodes.jsonl", std::string("bad episode entry: ") + ex.what());
    }
    m.episodes.push_back(e);
  }
  std::sort(m.episodes.begin(), m.episodes.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
  for (auto& e : m.episodes) {  // v2.1 frame ranges are the cumulative lengths
    e.from = next_from;
    e.to = next_from + e.length;
    next_from = e.to;
  }
  try {
    for (const auto& line : parse_jsonl(meta + "tasks.jsonl")) m.tasks[json_integer(line.at("task_index"))] = line.at("task").get<std::string>();
  } catch (const json::exception& ex) {
    fail(meta + "tasks.jsonl", std::string("bad task entry: ") + ex.what());
  }
  const std::string stats_file = meta + "episodes_stats.jsonl";
  if (fs::exists(stats_file))
    for (const auto& line : parse_jsonl(stats_file)) {
      try {
        const int64_t ep = json_integer(line.at("episode_index"));
        for (const auto& f : m.features)
          if (is_vector_feature(f) && line.at("stats").contains(f.key))
            m.episode_stats[ep][f.key] = stats_from_json(line["stats"][f.key], stats_file + ": episode " + std::to_string(ep) + " " + f.key);
      } catch (const json::exception& ex) {
        fail(stats_file, std::string("bad statistics entry: ") + ex.what());
      }
    }
}

void read_v30(Metadata& m) {
  const std::string meta = m.root + "/meta/";
  std::vector<std::string> files;
  if (fs::exists(meta + "episodes"))
    for (const auto& e : fs::recursive_directory_iterator(meta + "episodes"))
      if (e.path().extension() == ".parquet") files.push_back(e.path().string());
  if (files.empty()) fail(meta + "episodes", "no episode parquet files");
  std::sort(files.begin(), files.end());
  const auto cameras = m.cameras();
  for (const auto& file : files) try {
    const auto names = parquet_column_names(file);
    auto has = [&](const std::string& c) { return std::find(names.begin(), names.end(), c) != names.end(); };
    std::map<std::string, ColumnKind> cols = {{"episode_index", ColumnKind::Int64},      {"length", ColumnKind::Int64},
                                              {"tasks", ColumnKind::StringList},         {"data/chunk_index", ColumnKind::Int64},
                                              {"data/file_index", ColumnKind::Int64},    {"dataset_from_index", ColumnKind::Int64},
                                              {"dataset_to_index", ColumnKind::Int64}};
    for (const auto& cam : cameras) {
      cols["videos/" + cam + "/chunk_index"] = ColumnKind::Int64;
      cols["videos/" + cam + "/file_index"] = ColumnKind::Int64;
      cols["videos/" + cam + "/from_timestamp"] = ColumnKind::Float;
    }
    std::vector<std::string> stat_features;
    for (const auto& f : m.features)
      if (is_vector_feature(f) && has("stats/" + f.key + "/mean")) {
        stat_features.push_back(f.key);
        for (const char* s : {"min", "max", "mean", "std"}) cols["stats/" + f.key + "/" + s] = ColumnKind::Float;
        cols["stats/" + f.key + "/count"] = ColumnKind::Float;
      }
    const ParquetColumns t = read_parquet_columns(file, cols);
    for (int64_t r = 0; r < t.rows; ++r) {
      EpisodeMeta e;
      e.index = t.ints.at("episode_index")[r];
      e.length = t.ints.at("length")[r];
      e.tasks = t.string_lists.at("tasks")[r];
      e.data_chunk = t.ints.at("data/chunk_index")[r];
      e.data_file = t.ints.at("data/file_index")[r];
      e.from = t.ints.at("dataset_from_index")[r];
      e.to = t.ints.at("dataset_to_index")[r];
      for (const auto& cam : cameras)
        e.videos[cam] = {t.ints.at("videos/" + cam + "/chunk_index")[r], t.ints.at("videos/" + cam + "/file_index")[r],
                         static_cast<double>(t.floats.at("videos/" + cam + "/from_timestamp").values[r])};
      for (const auto& key : stat_features) {
        Stats s;
        auto row = [&](const char* stat) {
          const FloatColumn& c = t.floats.at("stats/" + key + "/" + stat);
          return std::vector<double>(c.values.begin() + r * c.width, c.values.begin() + (r + 1) * c.width);
        };
        s.min = row("min");
        s.max = row("max");
        s.mean = row("mean");
        s.std = row("std");
        s.count = static_cast<int64_t>(row("count").at(0));
        m.episode_stats[e.index][key] = s;
      }
      m.episodes.push_back(e);
    }
  } catch (const std::out_of_range& e) {
    fail(file, std::string("a column is shorter than its rows: ") + e.what());
  }
  std::sort(m.episodes.begin(), m.episodes.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
  const std::string tasks_file = meta + "tasks.parquet";
  const auto names = parquet_column_names(tasks_file);
  // pandas wrote the task string as the frame's index.
  const std::string task_column = std::find(names.begin(), names.end(), "task") != names.end() ? "task" : "__index_level_0__";
  const ParquetColumns t = read_parquet_columns(tasks_file, {{task_column, ColumnKind::String}, {"task_index", ColumnKind::Int64}});
  for (int64_t r = 0; r < t.rows; ++r) m.tasks[t.ints.at("task_index")[r]] = t.strings.at(task_column)[r];
}

}  // namespace

int64_t Feature::width() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Stats aggregate_stats(const std::vector<const Stats*>& parts) {
  if (parts.empty()) throw std::invalid_argument("aggregate_stats: nothing to aggregate");
  const size_t dims = parts.front()->mean.size();
  Stats out;
  out.min.assign(dims, INFINITY);
  out.max.assign(dims, -INFINITY);
  out.mean.assign(dims, 0);
  out.std.assign(dims, 0);
  for (const Stats* s : parts) {
    if (s->mean.size() != dims || s->std.size() != dims || s->min.size() != dims || s->max.size() != dims)
      throw std::runtime_error("aggregate_stats: episodes disagree on the feature's width");
    out.count += s->count;
  }
  for (const Stats* s : parts)
    for (size_t d = 0; d < dims; ++d) {
      out.mean[d] += static_cast<double>(s->count) * s->mean[d] / static_cast<double>(out.count);
      out.min[d] = std::min(out.min[d], s->min[d]);
      out.max[d] = std::max(out.max[d], s->max[d]);
    }
  for (const Stats* s : parts)
    for (size_t d = 0; d < dims; ++d) {
      const double delta = s->mean[d] - out.mean[d];
      out.std[d] += static_cast<double>(s->count) * (s->std[d] * s->std[d] + delta * delta) / static_cast<double>(out.count);
    }
  for (double& v : out.std) v = std::sqrt(v);
  return out;
}

std::string format_path(const std::string& pattern, const std::map<std::string, std::string>& strings,
                        const std::map<std::string, int64_t>& numbers) {
  std::string out;
  for (size_t i = 0; i < pattern.size();) {
    if (pattern[i] != '{') {
      out += pattern[i++];
      continue;
    }
    const size_t close = pattern.find('}', i);
    if (close == std::string::npos) throw std::runtime_error("path template '" + pattern + "': unclosed '{'");
    const std::string field = pattern.substr(i + 1, close - i - 1);
    const size_t colon = field.find(':');
    const std::string name = field.substr(0, colon);
    if (auto it = strings.find(name); it != strings.end()) {
      out += it->second;
    } else if (auto num = numbers.find(name); num != numbers.end()) {
      int width = 0;
      if (colon != std::string::npos) width = std::stoi(field.substr(colon + 1));  // "03d" -> 3, zero-padded
      std::string digits = std::to_string(num->second);
      if (static_cast<int>(digits.size()) < width) digits.insert(0, static_cast<size_t>(width) - digits.size(), '0');
      out += digits;
    } else {
      throw std::runtime_error("path template '" + pattern + "': unknown field '" + name + "'");
    }
    i = close + 1;
  }
  return out;
}

const Feature& Metadata::feature(const std::string& key) const {
  for (const auto& f : features)
    if (f.key == key) return f;
  throw std::runtime_error(root + "/meta/info.json: no feature '" + key + "'");
}

bool Metadata::has_feature(const std::string& key) const {
  return std::any_of(features.begin(), features.end(), [&](const Feature& f) { return f.key == key; });
}

std::vector<std::string> Metadata::cameras() const {
  std::vector<std::string> out;
  for (const auto& f : features)
    if (f.is_video()) out.push_back(f.key);
  std::sort(out.begin(), out.end());
  return out;
}

const EpisodeMeta& Metadata::episode(int64_t index) const {
  auto it = std::lower_bound(episodes.begin(), episodes.end(), index, [](const EpisodeMeta& e, int64_t i) { return e.index < i; });
  if (it == episodes.end() || it->index != index)
    throw std::runtime_error(root + ": episode " + std::to_string(index) + " does not exist");
  return *it;
}

std::string Metadata::data_file(const EpisodeMeta& e) const {
  const std::string rel = is_v3() ? format_path(data_path, {}, {{"chunk_index", e.data_chunk}, {"file_index", e.data_file}})
                                  : format_path(data_path, {}, {{"episode_chunk", e.index / chunks_size}, {"episode_index", e.index}});
  return root + "/" + rel;
}

std::string Metadata::video_file(const EpisodeMeta& e, const std::string& camera) const {
  if (is_v3()) {
    const VideoLocation& v = e.videos.at(camera);
    return root + "/" + format_path(video_path, {{"video_key", camera}}, {{"chunk_index", v.chunk}, {"file_index", v.file}});
  }
  return root + "/" + format_path(video_path, {{"video_key", camera}}, {{"episode_chunk", e.index / chunks_size}, {"episode_index", e.index}});
}

Stats Metadata::stats(const std::string& key, const std::vector<int64_t>& subset) const {
  std::vector<int64_t> wanted = subset;
  if (wanted.empty())
    for (const auto& e : episodes) wanted.push_back(e.index);
  std::vector<const Stats*> parts;
  for (int64_t ep : wanted) {
    auto it = episode_stats.find(ep);
    if (it == episode_stats.end() || !it->second.count(key))
      throw std::runtime_error(root + ": no statistics of '" + key + "' for episode " + std::to_string(ep));
    parts.push_back(&it->second.at(key));
  }
  return aggregate_stats(parts);
}

Metadata load_metadata(const std::string& root) {
  Metadata m;
  m.root = fs::path(root).lexically_normal().string();
  if (!m.root.empty() && m.root.back() == '/') m.root.pop_back();
  const std::string info_file = m.root + "/meta/info.json";
  const json info = parse_json_file(info_file);
  try {
    m.version = info.at("codebase_version").get<std::string>();
    if (info.contains("robot_type") && info["robot_type"].is_string()) m.robot_type = info["robot_type"].get<std::string>();
    m.fps = info.at("fps").get<double>();
    m.total_episodes = json_integer(info.at("total_episodes"));
    m.total_frames = json_integer(info.at("total_frames"));
    m.total_tasks = info.contains("total_tasks") ? json_integer(info["total_tasks"]) : 0;
    m.chunks_size = info.contains("chunks_size") ? json_integer(info["chunks_size"]) : 1000;
    if (!(m.fps > 0)) fail(info_file, "fps must be positive, not " + info["fps"].dump());
    if (m.chunks_size <= 0) fail(info_file, "chunks_size must be positive, not " + info["chunks_size"].dump());
    m.data_path = info.at("data_path").get<std::string>();
    if (info.contains("video_path") && !info["video_path"].is_null()) m.video_path = info["video_path"].get<std::string>();
    for (const auto& [key, f] : info.at("features").items()) {
      Feature feature;
      feature.key = key;
      feature.dtype = f.at("dtype").get<std::string>();
      feature.shape = json_integers(f.at("shape"));
      // A frame's feature is at most a few million values (a 4K image): anything beyond, or a
      // negative dimension, is a broken file, and width() must not overflow.
      int64_t width = 1;
      for (int64_t d : feature.shape)
        if (d < 0 || d > (int64_t{1} << 31) || (width *= d) > (int64_t{1} << 31) || feature.shape.size() > 8)
          fail(info_file, "feature '" + key + "' has the shape " + f.at("shape").dump() + ", not one of a frame");
      if (f.contains("names")) flatten_names(f["names"], feature.names);
      if (f.contains("info") && f["info"].is_object() && f["info"].contains("video.codec"))
        feature.codec = f["info"]["video.codec"].get<std::string>();
      m.features.push_back(feature);
    }
  } catch (const json::exception& e) {
    fail(info_file, e.what());
  }
  if (m.version != "v2.0" && m.version != "v2.1" && m.version != "v3.0")
    fail(info_file, "codebase_version '" + m.version + "' is not supported (v2.0, v2.1, v3.0 are)");
  if (!m.cameras().empty() && m.video_path.empty()) fail(info_file, "video features but no video_path");
  if (m.is_v3()) read_v30(m);
  else read_v21(m);
  if (static_cast<int64_t>(m.episodes.size()) != m.total_episodes)
    fail(info_file, "total_episodes is " + std::to_string(m.total_episodes) + " but the episode table lists " +
                        std::to_string(m.episodes.size()));
  return m;
}

}  // namespace zk0::lerobot
