#include "cli/dataset_command.h"

#include <iostream>
#include <map>
#include <set>
#include <type_traits>
#include <string>

#include "core/data/lerobot_dataset.h"
#include "core/lerobot/inspect.h"
#include "core/lerobot/synth.h"
#include "core/policy/policy.h"
#include "core/tensor/safetensors.h"

namespace zk0 {

namespace {

int usage() {
  std::cerr << "usage:\n"
               "  zk0 dataset inspect PATH [--json]\n"
               "      version, fps, robot, features, totals, each episode, tasks, and what is missing or inconsistent\n"
               "  zk0 dataset sample PATH --index I [--output FILE.safetensors] [--chunk-size 50]\n"
               "      one training sample as the worker sees it, before and after normalisation\n"
               "  zk0 dataset synth OUT [--version v2.1|v3.0] [--task TEXT] [--episodes N] [--episode-length L]\n"
               "                    [--seed S] [--fps F] [--cameras C] [--height H] [--width W] [--codec av1|h264]\n"
               "      write a LeRobot dataset of SO-100-like trajectories with rendered AV1 videos\n";
  return 2;
}

// --key value pairs after the positional arguments; unknown keys are an error.
bool parse_options(int argc, char** argv, int first, const std::set<std::string>& known, std::map<std::string, std::string>& out) {
  for (int i = first; i < argc; ++i) {
    const std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || !known.count(key.substr(2))) {
      std::cerr << "zk0: unknown option " << key << "\n";
      return false;
    }
    if (key == "--json") {
      out["json"] = "1";
      continue;
    }
    if (i + 1 >= argc) {
      std::cerr << "zk0: " << key << " needs a value\n";
      return false;
    }
    out[key.substr(2)] = argv[++i];
  }
  return true;
}

int inspect(const std::string& path, bool as_json) {
  const auto report = lerobot::inspect_dataset(lerobot::load_metadata(path));
  std::cout << (as_json ? report.dump(2) + "\n" : lerobot::format_report(report));
  return 0;
}

int sample(const std::string& path, const std::map<std::string, std::string>& o) {
  if (!o.count("index")) return usage();
  const int64_t chunk = o.count("chunk-size") ? std::stoll(o.at("chunk-size")) : 50;
  LeRobotDataset dataset(path, {}, chunk);
  const int64_t index = std::stoll(o.at("index"));
  const Sample s = dataset.get(index);
  const Batch normalised = collate({s}, dataset.state_stats(), dataset.action_stats());
  ParameterSet out;
  out.tensors.push_back(copy_tensor("observation.state", s.state));
  out.tensors.push_back(copy_tensor("observation.state.normalized", normalised.state[0]));
  out.tensors.push_back(copy_tensor("action", s.action));
  out.tensors.push_back(copy_tensor("action.normalized", normalised.action[0]));
  out.tensors.push_back(copy_tensor("action_is_pad", s.action_is_pad));
  for (const auto& [camera, image] : s.images) out.tensors.push_back(copy_tensor(camera, image));
  const std::map<std::string, std::string> meta = {{"task", s.task},
                                                   {"episode_index", std::to_string(s.episode)},
                                                   {"frame_index", std::to_string(s.frame)},
                                                   {"index", std::to_string(index)}};
  if (o.count("output")) {
    write_safetensors(o.at("output"), out, meta);
    std::cout << "wrote " << o.at("output") << "\n";
  } else {
    for (const auto& [k, v] : meta) std::cout << k << ": " << v << "\n";
    for (const auto& t : out.tensors) std::cout << t.name << ": " << dtype_name(t.dtype) << shape_string(t.shape) << "\n";
  }
  return 0;
}

int synth(const std::string& out, const std::map<std::string, std::string>& o) {
  lerobot::SynthOptions s;
  s.root = out;
  s.trajectories.task = "Put the red LEGO in the bin";
  auto get = [&](const char* key, auto& target) {
    if (!o.count(key)) return;
    if constexpr (std::is_same_v<std::decay_t<decltype(target)>, std::string>) target = o.at(key);
    else target = static_cast<std::decay_t<decltype(target)>>(std::stoll(o.at(key)));
  };
  get("version", s.version);
  get("task", s.trajectories.task);
  get("episodes", s.trajectories.episodes);
  get("episode-length", s.trajectories.episode_length);
  get("seed", s.trajectories.seed);
  get("fps", s.fps);
  get("cameras", s.cameras);
  get("height", s.height);
  get("width", s.width);
  get("codec", s.codec);
  lerobot::write_synthetic_dataset(s);
  std::cout << "wrote " << out << " (" << s.version << ", " << s.trajectories.episodes << " episodes of "
            << s.trajectories.episode_length << " frames, task \"" << s.trajectories.task << "\")\n";
  return 0;
}

}  // namespace

int dataset_command(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string sub = argv[1], path = argv[2];
  std::map<std::string, std::string> o;
  try {
    if (sub == "inspect") return parse_options(argc, argv, 3, {"json"}, o) ? inspect(path, o.count("json") > 0) : usage();
    if (sub == "sample") return parse_options(argc, argv, 3, {"index", "output", "chunk-size"}, o) ? sample(path, o) : usage();
    if (sub == "synth")
      return parse_options(argc, argv, 3,
                           {"version", "task", "episodes", "episode-length", "seed", "fps", "cameras", "height", "width", "codec"}, o)
                 ? synth(path, o)
                 : usage();
  } catch (const std::exception& e) {
    std::cerr << "zk0: " << e.what() << "\n";
    return 1;
  }
  return usage();
}

}  // namespace zk0
