#include "core/lerobot/synth.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/data/trajectories.h"
#include "core/lerobot/metadata.h"
#include "core/lerobot/parquet_table.h"
#include "core/lerobot/video_encoder.h"
#include "core/util/fs.h"

namespace zk0::lerobot {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* const kCameraNames[] = {"front", "wrist", "top"};

// Per-dimension statistics as LeRobot's compute_episode_stats writes them (numpy, ddof 0).
json vector_stats(const std::vector<double>& values, int64_t width) {
  const int64_t n = static_cast<int64_t>(values.size()) / width;
  std::vector<double> mn(width, INFINITY), mx(width, -INFINITY), mean(width, 0), sd(width, 0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t d = 0; d < width; ++d) {
      const double v = values[static_cast<size_t>(r * width + d)];
      mn[d] = std::min(mn[d], v);
      mx[d] = std::max(mx[d], v);
      mean[d] += v / static_cast<double>(n);
    }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t d = 0; d < width; ++d) {
      const double delta = values[static_cast<size_t>(r * width + d)] - mean[d];
      sd[d] += delta * delta / static_cast<double>(n);
    }
  for (double& v : sd) v = std::sqrt(v);
  return {{"min", mn}, {"max", mx}, {"mean", mean}, {"std", sd}, {"count", {n}}};
}

}  // namespace

// A simple scene: the gripper (a disc placed by the first two joints, sized by the gripper joint)
// over a floor whose shade tells the cameras apart.
void render_frame(const float* state, int camera, int height, int width, std::vector<uint8_t>& rgb) {
  rgb.resize(static_cast<size_t>(height) * width * 3);
  const double cx = width * (0.5 + 0.3 * std::tanh(state[0] + (camera == 1 ? state[3] : 0.0)));
  const double cy = height * (0.5 + 0.3 * std::tanh(state[1] - (camera == 2 ? state[2] : 0.0)));
  const double radius = std::max(3.0, width * (0.06 + 0.03 * std::tanh(state[5])));
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      uint8_t* p = &rgb[(static_cast<size_t>(y) * width + x) * 3];
      const bool inside = (x - cx) * (x - cx) + (y - cy) * (y - cy) <= radius * radius;
      p[0] = inside ? 230 : static_cast<uint8_t>(60 + 40 * camera);
      p[1] = inside ? static_cast<uint8_t>(120 + 100 * std::tanh(std::fabs(state[4]))) : static_cast<uint8_t>(90 + y * 60 / height);
      p[2] = inside ? 40 : static_cast<uint8_t>(110 + x * 60 / width);
    }
}

namespace {

// Channel statistics of rendered frames, shaped [3, 1, 1] and scaled to [0, 1] as LeRobot stores them.
struct ImageStats {
  double sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0}, mn[3] = {1, 1, 1}, mx[3] = {0, 0, 0};
  int64_t pixels = 0, frames = 0;
  void add(const std::vector<uint8_t>& rgb) {
    for (size_t i = 0; i < rgb.size(); i += 3)
      for (int c = 0; c < 3; ++c) {
        const double v = rgb[i + c] / 255.0;
        sum[c] += v;
        sq[c] += v * v;
        mn[c] = std::min(mn[c], v);
        mx[c] = std::max(mx[c], v);
      }
    pixels += static_cast<int64_t>(rgb.size() / 3);
    ++frames;
  }
  json to_json() const {
    auto chw = [](const double* v) { return json::array({{{v[0]}}, {{v[1]}}, {{v[2]}}}); };
    double mean[3], sd[3];
    for (int c = 0; c < 3; ++c) {
      mean[c] = sum[c] / static_cast<double>(pixels);
      sd[c] = std::sqrt(std::max(0.0, sq[c] / static_cast<double>(pixels) - mean[c] * mean[c]));
    }
    return {{"min", chw(mn)}, {"max", chw(mx)}, {"mean", chw(mean)}, {"std", chw(sd)}, {"count", {frames}}};
  }
};

json video_info(const SynthOptions& o) {
  return {{"video.height", o.height}, {"video.width", o.width},   {"video.codec", o.codec},
          {"video.pix_fmt", "yuv420p"}, {"video.is_depth_map", false}, {"video.fps", o.fps},
          {"video.channels", 3},        {"has_audio", false}};
}

}  // namespace

void write_synthetic_dataset(const SynthOptions& o) {
  const bool v3 = o.version == "v3.0";
  if (!v3 && o.version != "v2.1") throw std::invalid_argument("synth: version must be v2.1 or v3.0, not '" + o.version + "'");
  if (o.cameras < 0 || o.cameras > 3) throw std::invalid_argument("synth: 0 to 3 cameras");
  if (o.height < 64 || o.width < 64 || o.height % 8 || o.width % 8)
    throw std::invalid_argument("synth: frames must be at least 64x64 and multiples of 8");
  if (fs::exists(o.root)) throw std::runtime_error(o.root + ": already exists");
  const std::string tmp_root = o.root + ".partial";
  fs::remove_all(tmp_root);
  fs::create_directories(tmp_root + "/meta");

  const auto trajectories = generate_trajectories(o.trajectories, {});
  std::vector<std::string> cameras;
  for (int c = 0; c < o.cameras; ++c) cameras.push_back(std::string("observation.images.") + kCameraNames[c]);
  std::vector<std::string> joints(kSo100JointNames, kSo100JointNames + kSo100Joints);

  json features = {
      {"action", {{"dtype", "float32"}, {"shape", {kSo100Joints}}, {"names", joints}}},
      {"observation.state", {{"dtype", "float32"}, {"shape", {kSo100Joints}}, {"names", joints}}},
      {"timestamp", {{"dtype", "float32"}, {"shape", {1}}, {"names", nullptr}}},
      {"frame_index", {{"dtype", "int64"}, {"shape", {1}}, {"names", nullptr}}},
      {"episode_index", {{"dtype", "int64"}, {"shape", {1}}, {"names", nullptr}}},
      {"index", {{"dtype", "int64"}, {"shape", {1}}, {"names", nullptr}}},
      {"task_index", {{"dtype", "int64"}, {"shape", {1}}, {"names", nullptr}}}};
  if (v3)
    for (auto& [k, f] : features.items()) f["fps"] = o.fps;
  for (const auto& cam : cameras)
    features[cam] = {{"dtype", "video"}, {"shape", {o.height, o.width, 3}}, {"names", {"height", "width", "channels"}}, {"info", video_info(o)}};

  // Frames, episode by episode.
  struct EpisodeOut {
    int64_t index, from, length;
    json stats;
    std::map<std::string, double> video_from;
  };
  std::vector<EpisodeOut> episodes;
  WriteColumn state{"observation.state", ColumnKind::Float, kSo100Joints}, action{"action", ColumnKind::Float, kSo100Joints},
      timestamp{"timestamp", ColumnKind::Float}, frame_index{"frame_index", ColumnKind::Int64},
      episode_index{"episode_index", ColumnKind::Int64}, index{"index", ColumnKind::Int64}, task_index{"task_index", ColumnKind::Int64};
  std::map<std::string, std::unique_ptr<VideoEncoder>> v3_video;  // one concatenated file per camera
  std::vector<uint8_t> rgb;
  int64_t global = 0;
  for (const auto& t : trajectories) {
    EpisodeOut ep{t.episode, global, t.length(), json::object(), {}};
    const size_t first_value = state.numbers.size();
    for (int64_t f = 0; f < t.length(); ++f) {
      for (int64_t j = 0; j < kSo100Joints; ++j) {
        state.numbers.push_back(t.states[static_cast<size_t>(f * kSo100Joints + j)]);
        action.numbers.push_back(t.actions[static_cast<size_t>(f * kSo100Joints + j)]);
      }
      timestamp.numbers.push_back(static_cast<float>(static_cast<double>(f) / o.fps));
      frame_index.ints.push_back(f);
      episode_index.ints.push_back(t.episode);
      index.ints.push_back(global + f);
      task_index.ints.push_back(0);
    }
    auto slice = [&](const std::vector<double>& v, size_t from) { return std::vector<double>(v.begin() + static_cast<std::ptrdiff_t>(from), v.end()); };
    auto ints_slice = [&](const std::vector<int64_t>& v) {
      return std::vector<double>(v.end() - t.length(), v.end());
    };
    ep.stats["observation.state"] = vector_stats(slice(state.numbers, first_value), kSo100Joints);
    ep.stats["action"] = vector_stats(slice(action.numbers, first_value), kSo100Joints);
    ep.stats["timestamp"] = vector_stats(slice(timestamp.numbers, timestamp.numbers.size() - static_cast<size_t>(t.length())), 1);
    ep.stats["frame_index"] = vector_stats(ints_slice(frame_index.ints), 1);
    ep.stats["episode_index"] = vector_stats(ints_slice(episode_index.ints), 1);
    ep.stats["index"] = vector_stats(ints_slice(index.ints), 1);
    ep.stats["task_index"] = vector_stats(ints_slice(task_index.ints), 1);
    for (int c = 0; c < o.cameras; ++c) {
      const std::string& cam = cameras[static_cast<size_t>(c)];
      std::unique_ptr<VideoEncoder> own;
      VideoEncoder* encoder;
      if (v3) {
        auto& e = v3_video[cam];
        if (!e) {
          fs::create_directories(tmp_root + "/videos/" + cam + "/chunk-000");
          e = std::make_unique<VideoEncoder>(tmp_root + "/videos/" + cam + "/chunk-000/file-000.mp4.tmp", o.width, o.height, o.fps, o.codec);
        }
        encoder = e.get();
        ep.video_from[cam] = static_cast<double>(global) / o.fps;
      } else {
        const std::string path = tmp_root + "/" + format_path("videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
                                                              {{"video_key", cam}}, {{"episode_chunk", 0}, {"episode_index", t.episode}});
        fs::create_directories(fs::path(path).parent_path());
        own = std::make_unique<VideoEncoder>(path, o.width, o.height, o.fps, o.codec);
        encoder = own.get();
      }
      ImageStats image_stats;
      for (int64_t f = 0; f < t.length(); ++f) {
        render_frame(&t.states[static_cast<size_t>(f * kSo100Joints)], c, o.height, o.width, rgb);
        encoder->add_frame(rgb.data());
        image_stats.add(rgb);
      }
      if (own) own->finish();
      ep.stats[cam] = image_stats.to_json();
    }
    episodes.push_back(ep);
    global += t.length();
  }
  for (auto& [cam, encoder] : v3_video) {
    encoder->finish();
    encoder.reset();
    const std::string dir = tmp_root + "/videos/" + cam + "/chunk-000";
    fs::rename(dir + "/file-000.mp4.tmp", dir + "/file-000.mp4");
  }

  const std::vector<WriteColumn> frame_columns = {state, action, timestamp, frame_index, episode_index, index, task_index};
  json info = {{"codebase_version", o.version},
               {"robot_type", "so101_follower"},
               {"total_episodes", episodes.size()},
               {"total_frames", global},
               {"total_tasks", 1},
               {"chunks_size", 1000},
               {"fps", o.fps},
               {"splits", {{"train", "0:" + std::to_string(episodes.size())}}},
               {"features", features}};
  const std::string& task = o.trajectories.task;
  if (v3) {
    info["data_files_size_in_mb"] = 100;
    info["video_files_size_in_mb"] = 200;
    info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet";
    info["video_path"] = cameras.empty() ? json(nullptr) : json("videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4");
    // One data file, one row group per episode, as LeRobot's recorder writes them.
    std::vector<int64_t> groups;
    for (const auto& e : episodes) groups.push_back(e.length);
    write_parquet(tmp_root + "/data/chunk-000/file-000.parquet", frame_columns, global, groups);
    // The episode table.
    std::vector<WriteColumn> ep_cols = {{"episode_index", ColumnKind::Int64}, {"tasks", ColumnKind::StringList},
                                        {"length", ColumnKind::Int64},        {"data/chunk_index", ColumnKind::Int64},
                                        {"data/file_index", ColumnKind::Int64}, {"dataset_from_index", ColumnKind::Int64},
                                        {"dataset_to_index", ColumnKind::Int64}, {"meta/episodes/chunk_index", ColumnKind::Int64},
                                        {"meta/episodes/file_index", ColumnKind::Int64}};
    for (const auto& e : episodes) {
      ep_cols[0].ints.push_back(e.index);
      ep_cols[1].string_lists.push_back({task});
      ep_cols[2].ints.push_back(e.length);
      ep_cols[3].ints.push_back(0);
      ep_cols[4].ints.push_back(0);
      ep_cols[5].ints.push_back(e.from);
      ep_cols[6].ints.push_back(e.from + e.length);
      ep_cols[7].ints.push_back(0);
      ep_cols[8].ints.push_back(0);
    }
    for (const auto& cam : cameras) {
      WriteColumn chunk{"videos/" + cam + "/chunk_index", ColumnKind::Int64}, file{"videos/" + cam + "/file_index", ColumnKind::Int64},
          from{"videos/" + cam + "/from_timestamp", ColumnKind::Float}, to{"videos/" + cam + "/to_timestamp", ColumnKind::Float};
      from.double_precision = to.double_precision = true;
      for (const auto& e : episodes) {
        chunk.ints.push_back(0);
        file.ints.push_back(0);
        from.numbers.push_back(e.video_from.at(cam));
        to.numbers.push_back(e.video_from.at(cam) + static_cast<double>(e.length) / o.fps);
      }
      for (auto* c : {&chunk, &file, &from, &to}) ep_cols.push_back(*c);
    }
    for (const std::string key : {"observation.state", "action"})
      for (const char* stat : {"min", "max", "mean", "std", "count"}) {
        WriteColumn c{"stats/" + key + "/" + stat, std::string(stat) == "count" ? ColumnKind::Int64 : ColumnKind::Float,
                      std::string(stat) == "count" ? 1 : kSo100Joints};
        c.double_precision = true;
        for (const auto& e : episodes)
          for (const auto& v : e.stats[key][stat]) {
            if (c.kind == ColumnKind::Int64) c.ints.push_back(v.get<int64_t>());
            else c.numbers.push_back(v.get<double>());
          }
        ep_cols.push_back(c);
      }
    write_parquet(tmp_root + "/meta/episodes/chunk-000/file-000.parquet", ep_cols, static_cast<int64_t>(episodes.size()),
                  {static_cast<int64_t>(episodes.size())});
    // Tasks: pandas wrote the task string as the frame's index.
    WriteColumn task_idx{"task_index", ColumnKind::Int64}, task_str{"__index_level_0__", ColumnKind::String};
    task_idx.ints = {0};
    task_str.strings = {task};
    const json pandas = {{"index_columns", {"__index_level_0__"}},
                         {"column_indexes", json::array()},
                         {"columns",
                          {{{"name", "task_index"}, {"field_name", "task_index"}, {"pandas_type", "int64"}, {"numpy_type", "int64"}, {"metadata", nullptr}},
                           {{"name", nullptr}, {"field_name", "__index_level_0__"}, {"pandas_type", "unicode"}, {"numpy_type", "object"}, {"metadata", nullptr}}}},
                         {"creator", {{"library", "zk0"}, {"version", "0.1.0"}}},
                         {"pandas_version", "2.2.3"}};
    write_parquet(tmp_root + "/meta/tasks.parquet", {task_idx, task_str}, 1, {1}, {{"pandas", pandas.dump()}});
    // Aggregated statistics.
    json stats = json::object();
    for (const std::string key : {"observation.state", "action"}) {
      std::vector<Stats> parts;
      for (const auto& e : episodes) {
        const json& j = e.stats[key];
        parts.push_back({j["min"].get<std::vector<double>>(), j["max"].get<std::vector<double>>(), j["mean"].get<std::vector<double>>(),
                         j["std"].get<std::vector<double>>(), j["count"][0].get<int64_t>()});
      }
      std::vector<const Stats*> ptrs;
      for (const auto& p : parts) ptrs.push_back(&p);
      const Stats a = aggregate_stats(ptrs);
      stats[key] = {{"min", a.min}, {"max", a.max}, {"mean", a.mean}, {"std", a.std}, {"count", {a.count}}};
    }
    write_file_atomic(tmp_root + "/meta/stats.json", stats.dump(4));
  } else {
    info["total_videos"] = episodes.size() * cameras.size();
    info["total_chunks"] = 1;
    info["data_path"] = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet";
    info["video_path"] = cameras.empty() ? json(nullptr) : json("videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4");
    int64_t row = 0;
    for (const auto& e : episodes) {
      std::vector<WriteColumn> cols = frame_columns;
      for (auto& c : cols) {  // this episode's rows only
        const size_t w = static_cast<size_t>(c.width), a = static_cast<size_t>(row) * w, b = static_cast<size_t>(row + e.length) * w;
        if (c.kind == ColumnKind::Int64) c.ints = std::vector<int64_t>(c.ints.begin() + a, c.ints.begin() + b);
        else c.numbers = std::vector<double>(c.numbers.begin() + a, c.numbers.begin() + b);
      }
      write_parquet(tmp_root + "/" + format_path(info["data_path"], {}, {{"episode_chunk", 0}, {"episode_index", e.index}}), cols, e.length,
                    {e.length});
      row += e.length;
    }
    std::string episodes_jsonl, stats_jsonl;
    for (const auto& e : episodes) {
      episodes_jsonl += json{{"episode_index", e.index}, {"tasks", {task}}, {"length", e.length}}.dump() + "\n";
      stats_jsonl += json{{"episode_index", e.index}, {"stats", e.stats}}.dump() + "\n";
    }
    write_file_atomic(tmp_root + "/meta/episodes.jsonl", episodes_jsonl);
    write_file_atomic(tmp_root + "/meta/episodes_stats.jsonl", stats_jsonl);
    write_file_atomic(tmp_root + "/meta/tasks.jsonl", json{{"task_index", 0}, {"task", task}}.dump() + "\n");
  }
  write_file_atomic(tmp_root + "/meta/info.json", info.dump(4));
  fs::rename(tmp_root, o.root);
}

}  // namespace zk0::lerobot
