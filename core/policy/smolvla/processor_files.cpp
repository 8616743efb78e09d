#include "core/policy/smolvla/processor_files.h"

#include <filesystem>

#include "core/policy/policy.h"
#include "core/tensor/safetensors.h"
#include "core/util/fs.h"

namespace zk0::smolvla {

namespace fs = std::filesystem;

namespace {

const char* kPreprocessor = "policy_preprocessor.json";
const char* kPostprocessor = "policy_postprocessor.json";
const char* kNormalizerFile = "policy_preprocessor_step_5_normalizer_processor.safetensors";
const char* kUnnormalizerFile = "policy_postprocessor_step_0_unnormalizer_processor.safetensors";
const nlohmann::json kNormMap = {{"VISUAL", "IDENTITY"}, {"STATE", "MEAN_STD"}, {"ACTION", "MEAN_STD"}};

void write_stats(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  ParameterSet set;
  for (const auto& [name, t] : tensors)
    if (t.defined()) set.tensors.push_back(copy_tensor(name, t.to(at::kCPU, at::kFloat).contiguous()));
  write_safetensors(path, set);
}

}  // namespace

void write_processor_files(const std::string& dir, const Config& c, const NormalizationStats& stats) {
  const nlohmann::ordered_json lerobot = c.to_lerobot_json();
  nlohmann::ordered_json features = lerobot["input_features"];
  features["action"] = lerobot["output_features"]["action"];
  const nlohmann::json pre = {
      {"name", "policy_preprocessor"},
      {"steps",
       {{{"registry_name", "rename_observations_processor"}, {"config", {{"rename_map", c.rename_map}}}},
        {{"registry_name", "to_batch_processor"}, {"config", nlohmann::json::object()}},
        {{"registry_name", "smolvla_new_line_processor"}, {"config", nlohmann::json::object()}},
        {{"registry_name", "tokenizer_processor"},
         {"config",
          {{"max_length", c.tokenizer_max_length},
           {"task_key", "task"},
           {"padding_side", "right"},
           {"padding", c.pad_language_to_max_length ? "max_length" : "longest"},
           {"truncation", true},
           {"tokenizer_name", c.vlm_model_name}}}},
        {{"registry_name", "device_processor"}, {"config", {{"device", "cpu"}, {"float_dtype", nullptr}}}},
        {{"registry_name", "normalizer_processor"},
         {"config", {{"eps", 1e-8}, {"features", features}, {"norm_map", kNormMap}}},
         {"state_file", kNormalizerFile}}}}};
  const nlohmann::json post = {
      {"name", "policy_postprocessor"},
      {"steps",
       {{{"registry_name", "unnormalizer_processor"},
         {"config", {{"eps", 1e-8}, {"features", {{"action", features["action"]}}}, {"norm_map", kNormMap}}},
         {"state_file", kUnnormalizerFile}},
        {{"registry_name", "device_processor"}, {"config", {{"device", "cpu"}, {"float_dtype", nullptr}}}}}}};
  const fs::path d(dir);
  write_stats((d / kNormalizerFile).string(), {{"action.mean", stats.action.mean},
                                               {"action.std", stats.action.std},
                                               {"observation.state.mean", stats.state.mean},
                                               {"observation.state.std", stats.state.std}});
  write_stats((d / kUnnormalizerFile).string(), {{"action.mean", stats.action.mean}, {"action.std", stats.action.std}});
  write_file_atomic((d / kPreprocessor).string(), pre.dump(2) + "\n");
  write_file_atomic((d / kPostprocessor).string(), post.dump(2) + "\n");
}

std::optional<NormalizationStats> read_processor_stats(const std::string& dir) {
  const fs::path pipeline = fs::path(dir) / kPreprocessor;
  if (!fs::is_regular_file(pipeline)) return std::nullopt;
  const auto j = nlohmann::json::parse(read_file(pipeline.string()), nullptr, false);
  if (j.is_discarded() || !j.contains("steps")) throw std::runtime_error(pipeline.string() + ": not a LeRobot processor pipeline");
  for (const auto& step : j["steps"]) {
    if (step.value("registry_name", "") != "normalizer_processor" || !step.contains("state_file")) continue;
    const std::string file = (fs::path(dir) / step["state_file"].get<std::string>()).string();
    std::map<std::string, at::Tensor> t;
    for (const auto& tensor : read_safetensors(file).tensors) t[tensor.name] = to_aten(tensor);
    NormalizationStats s;
    for (auto [key, out] : {std::pair{"observation.state", &s.state}, std::pair{"action", &s.action}}) {
      const std::string mean = std::string(key) + ".mean", std = std::string(key) + ".std";
      if (t.count(mean) && t.count(std)) *out = {t.at(mean), t.at(std)};
    }
    return s;
  }
  throw std::runtime_error(pipeline.string() + ": no normalizer_processor step with a state_file");
}

}  // namespace zk0::smolvla
