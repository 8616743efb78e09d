// SmolVLA in zk0: the parameter inventory at full size, the frozen-prefix cache (the same loss and
// gradients with and without it, from memory and from disk), checkpoints in LeRobot's names and
// dtypes, and clear errors for bad configuration and inputs.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/policy/smolvla/smolvla_policy.h"
#include "core/tensor/safetensors.h"
#include "core/util/fs.h"
#include "support/test_support.h"

#include <fstream>
#include <map>

namespace zk0 {
namespace {

const std::string kTinyBackbone = std::string(ZK0_SOURCE_DIR) + "/examples/smolvla-tiny/backbone";

nlohmann::json features(int cameras) {
  nlohmann::json inputs = {{"observation.state", {{"type", "STATE"}, {"shape", {6}}}}};
  for (int c = 0; c < cameras; ++c)
    inputs["observation.images.cam" + std::to_string(c)] = {{"type", "VISUAL"}, {"shape", {3, 40, 56}}};
  return {{"input_features", inputs}, {"output_features", {{"action", {{"type", "ACTION"}, {"shape", {6}}}}}}};
}

PolicySpec tiny_spec(nlohmann::json extra = nlohmann::json::object()) {
  PolicySpec spec;
  spec.type = "smolvla";
  spec.config = features(2);
  spec.config["vlm_model_name"] = kTinyBackbone;
  spec.config["chunk_size"] = 8;
  spec.config["n_action_steps"] = 8;
  spec.config["resize_imgs_with_padding"] = {64, 64};
  spec.config["tokenizer_max_length"] = 16;
  spec.config["init_seed"] = 5;
  for (auto it = extra.begin(); it != extra.end(); ++it) spec.config[it.key()] = it.value();
  return spec;
}

Batch tiny_batch(int64_t b, uint64_t seed) {
  at::manual_seed(seed);
  Batch batch;
  batch.state = at::randn({b, 6});
  batch.action = at::randn({b, 8, 6});
  batch.action_is_pad = at::zeros({b, 8}, at::kBool);
  batch.action_is_pad.narrow(1, 5, 3).select(0, 0).fill_(true);
  for (int c = 0; c < 2; ++c) batch.images["observation.images.cam" + std::to_string(c)] = at::rand({b, 3, 40, 56});
  const std::vector<std::string> tasks = {"pick up the red cube", "open the drawer", "stack the cubes and put them in the box"};
  for (int64_t i = 0; i < b; ++i) batch.task.push_back(tasks[static_cast<size_t>(i) % tasks.size()]);
  return batch;
}

at::Tensor loss_of(Policy& policy, const Batch& batch, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return policy.loss(batch, gen);
}

// The loss's gradients of the parameters the prefix cache's keys and values reach (through the
// expert's attention) and of one it does not.
const char* kGradientProbes[] = {"model.state_proj.weight", "model.action_in_proj.weight",
                                 "model.vlm_with_expert.lm_expert.layers.1.self_attn.k_proj.weight"};

std::map<std::string, at::Tensor> gradients_of(Policy& policy, const Batch& batch, uint64_t seed) {
  for (auto& [name, t] : policy.parameters())
    if (t.grad().defined()) t.mutable_grad().zero_();
  loss_of(policy, batch, seed).backward();
  std::map<std::string, at::Tensor> out;
  for (auto& [name, t] : policy.parameters())
    for (const char* probe : kGradientProbes)
      if (name == probe) out[name] = t.grad().clone();
  return out;
}

// The README's promise for the cache: loss and gradients equal the uncached ones within 1e-5.
void expect_same_gradients(const std::map<std::string, at::Tensor>& actual, const std::map<std::string, at::Tensor>& expected) {
  ASSERT_EQ(actual.size(), std::size(kGradientProbes));
  for (const auto& [name, e] : expected) {
    EXPECT_GT(e.abs().max().item<double>(), 0) << name;
    EXPECT_LE((actual.at(name) - e).abs().max().item<double>(), 1e-5 * e.abs().max().item<double>()) << name;
  }
}

int64_t directory_bytes(const std::string& dir) {
  int64_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) total += static_cast<int64_t>(std::filesystem::file_size(e.path()));
  return total;
}

TEST(SmolVLA, FullSizeHasLeRobotsParameterInventory) {
  PolicySpec spec;
  spec.type = "smolvla";
  spec.config = features(3);  // the SmolVLM2-500M backbone sizes are built in
  auto policy = make_policy(spec);
  int64_t total = 0, trainable = 0;
  for (const auto& [name, t] : policy->parameters()) total += t.numel();
  for (const auto& [name, t] : policy->trainable_parameters()) trainable += t.numel();
  EXPECT_EQ(policy->parameters().size(), 500u);
  EXPECT_EQ(total, 450046176);
  EXPECT_EQ(trainable, 99880992);  // the action expert and the five projections, as LeRobot trains
  const auto params = policy->parameters();
  auto shape_of = [&](const std::string& name) {
    for (const auto& [n, t] : params)
      if (n == name) return t.sizes().vec();
    return std::vector<int64_t>{};
  };
  EXPECT_EQ(shape_of("model.vlm_with_expert.lm_expert.layers.1.self_attn.k_proj.weight"), (std::vector<int64_t>{320, 320}));
  EXPECT_EQ(shape_of("model.vlm_with_expert.lm_expert.layers.0.self_attn.k_proj.weight"), (std::vector<int64_t>{320, 720}));
  EXPECT_EQ(shape_of("model.vlm_with_expert.lm_expert.layers.0.mlp.gate_proj.weight"), (std::vector<int64_t>{2048, 720}));
  EXPECT_EQ(shape_of("model.vlm_with_expert.vlm.model.connector.modality_projection.proj.weight"),
            (std::vector<int64_t>{960, 12288}));
}

TEST(SmolVLA, PrefixCacheGivesTheSameLossAndGradients) {
  auto cached = make_policy(tiny_spec());
  auto uncached = make_policy(tiny_spec({{"prefix_cache", {{"enabled", false}}}}));
  const Batch batch = tiny_batch(3, 1);
  const at::Tensor expected = loss_of(*uncached, batch, 9);  // the prefix recomputed without autograd
  const at::Tensor first = loss_of(*cached, batch, 9);  // fills the cache
  EXPECT_NEAR(first.item<double>(), expected.item<double>(), 1e-5 * std::abs(expected.item<double>()));
  const at::Tensor second = loss_of(*cached, batch, 9);  // served from it
  EXPECT_NEAR(second.item<double>(), expected.item<double>(), 1e-5 * std::abs(expected.item<double>()));
  auto stats = cached->prefix_cache_stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->misses, 3);
  EXPECT_EQ(stats->memory_hits, 3);

  // A batch read from a dataset is keyed by its samples' ids, not by hashing its frames.
  Batch with_ids = batch;
  with_ids.sample_ids = {"path:/d#0:0", "path:/d#0:1", "path:/d#3:7"};
  EXPECT_NEAR(loss_of(*cached, with_ids, 9).item<double>(), expected.item<double>(), 1e-5 * std::abs(expected.item<double>()));
  EXPECT_EQ(cached->prefix_cache_stats()->misses, 6);
  loss_of(*cached, with_ids, 9);
  EXPECT_EQ(cached->prefix_cache_stats()->memory_hits, 6);

  // Gradients reach state_proj through the frozen VLM layers the state token still runs.
  expect_same_gradients(gradients_of(*cached, batch, 9), gradients_of(*uncached, batch, 9));
}

// A disk entry whose payload has one flipped bit parses as safetensors and would be served as
// keys and values; its checksum catches it: dropped, counted, recomputed, and the loss is the
// uncached one.
TEST(SmolVLA, PrefixCacheDropsADiskEntryWithOneFlippedByte) {
  const std::string dir = test::make_temp_dir("smolvla-cache-flip");
  const nlohmann::json cache = {{"prefix_cache", {{"memory_mb", 1}, {"disk_mb", 64}, {"dir", dir}}}};
  const Batch batch = tiny_batch(2, 2);
  auto reference = make_policy(tiny_spec({{"prefix_cache", {{"enabled", false}}}}));
  const double expected = loss_of(*reference, batch, 4).item<double>();
  loss_of(*make_policy(tiny_spec(cache)), batch, 4);  // fills the disk tier
  std::vector<std::filesystem::path> entries;
  for (const auto& e : std::filesystem::directory_iterator(dir)) entries.push_back(e.path());
  ASSERT_EQ(entries.size(), 2u);
  {
    std::string bytes = read_file(entries[0].string());
    uint64_t header = 0;
    for (int i = 0; i < 8; ++i) header |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[static_cast<size_t>(i)])) << (8 * i);
    bytes[8 + header + 3] ^= 0x40;  // the exponent of the first key: a large change, still a finite float
    std::ofstream(entries[0], std::ios::binary | std::ios::trunc) << bytes;
    EXPECT_NO_THROW(read_safetensors(entries[0].string()));  // still well-formed: only a checksum can tell
  }
  auto after = make_policy(tiny_spec(cache));
  const double loss = loss_of(*after, batch, 4).item<double>();
  EXPECT_NEAR(loss, expected, 1e-5 * std::abs(expected));
  const auto stats = dynamic_cast<smolvla::SmolVLAPolicy&>(*after).prefix_cache_stats();
  EXPECT_EQ(stats->corrupt_entries, 1);
  EXPECT_EQ(stats->disk_hits, 1);
  EXPECT_EQ(stats->misses, 1);
  // The recomputed entry is written again, whole: the next process is served both.
  auto later = make_policy(tiny_spec(cache));
  loss_of(*later, batch, 4);
  EXPECT_EQ(dynamic_cast<smolvla::SmolVLAPolicy&>(*later).prefix_cache_stats()->disk_hits, 2);
  EXPECT_EQ(dynamic_cast<smolvla::SmolVLAPolicy&>(*later).prefix_cache_stats()->corrupt_entries, 0);
  // An entry renamed over another's key (a file moved, a bug in eviction) is not served either.
  std::vector<std::filesystem::path> now;
  for (const auto& e : std::filesystem::directory_iterator(dir)) now.push_back(e.path());
  ASSERT_EQ(now.size(), 2u);
  std::filesystem::copy_file(now[0], now[1], std::filesystem::copy_options::overwrite_existing);
  auto swapped = make_policy(tiny_spec(cache));
  EXPECT_NEAR(loss_of(*swapped, batch, 4).item<double>(), expected, 1e-5 * std::abs(expected));
  EXPECT_EQ(dynamic_cast<smolvla::SmolVLAPolicy&>(*swapped).prefix_cache_stats()->corrupt_entries, 1);
  std::filesystem::remove_all(dir);
}

TEST(SmolVLA, EveryPrefixPathGivesTheSameVelocityAndGradients) {
  using Path = smolvla::SmolVLAPolicy::PrefixPath;
  std::vector<std::pair<at::Tensor, at::Tensor>> results;  // velocity, action_in_proj gradient
  for (Path path : {Path::Joint, Path::Recompute, Path::Cached, Path::Cached}) {
    auto policy = make_policy(tiny_spec());
    auto& p = dynamic_cast<smolvla::SmolVLAPolicy&>(*policy);
    const Batch batch = tiny_batch(3, 6);
    at::manual_seed(3);
    const FlowMatchingDraw d = flow_matching_at(p.pad_action(batch.action), at::randn({3, 8, 32}), at::rand({3}));
    at::Tensor v = p.velocity(p.prepare(batch), d.x_t, d.time, path);
    if (path == Path::Cached) v = p.velocity(p.prepare(batch), d.x_t, d.time, path);  // from the cache
    v.pow(2).mean().backward();
    at::Tensor grad;
    for (auto& [name, param] : p.parameters())
      if (name == "model.state_proj.weight") grad = param.grad();
    results.emplace_back(v.detach(), grad);
  }
  for (size_t i = 1; i < results.size(); ++i) {
    EXPECT_LE((results[i].first - results[0].first).abs().max().item<double>(), 1e-5 * results[0].first.abs().max().item<double>());
    EXPECT_LE((results[i].second - results[0].second).abs().max().item<double>(),
              1e-4 * results[0].second.abs().max().item<double>());
  }
}

TEST(SmolVLA, PrefixCacheOnDiskServesAnotherProcessAndIsBounded) {
  const std::string dir = test::make_temp_dir("smolvla-cache");
  const nlohmann::json cache = {{"prefix_cache", {{"memory_mb", 1}, {"disk_mb", 64}, {"dir", dir}}}};
  const Batch batch = tiny_batch(2, 2);
  auto reference = make_policy(tiny_spec({{"prefix_cache", {{"enabled", false}}}}));
  const double expected = loss_of(*reference, batch, 4).item<double>();
  {
    auto writer = make_policy(tiny_spec(cache));
    EXPECT_NEAR(loss_of(*writer, batch, 4).item<double>(), expected, 1e-5 * std::abs(expected));
  }
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.path().extension() == ".safetensors";
  EXPECT_EQ(files, 2u);
  auto reader = make_policy(tiny_spec(cache));
  EXPECT_NEAR(loss_of(*reader, batch, 4).item<double>(), expected, 1e-5 * std::abs(expected));
  EXPECT_EQ(dynamic_cast<smolvla::SmolVLAPolicy&>(*reader).prefix_cache_stats()->disk_hits, 2);
  // Gradients served from the disk tier are the uncached ones too.
  expect_same_gradients(gradients_of(*make_policy(tiny_spec(cache)), batch, 4), gradients_of(*reference, batch, 4));

  // A truncated entry is dropped and recomputed, not served.
  for (const auto& e : std::filesystem::directory_iterator(dir)) std::filesystem::resize_file(e.path(), 20);
  auto after_corruption = make_policy(tiny_spec(cache));
  EXPECT_NEAR(loss_of(*after_corruption, batch, 4).item<double>(), expected, 1e-5 * std::abs(expected));
  EXPECT_EQ(dynamic_cast<smolvla::SmolVLAPolicy&>(*after_corruption).prefix_cache_stats()->misses, 2);

  // The disk tier stays within its bound through many inserts (1 MiB holds only some of them).
  const std::string small = test::make_temp_dir("smolvla-cache-bound");
  auto filling = make_policy(tiny_spec({{"prefix_cache", {{"memory_mb", 0}, {"disk_mb", 1}, {"dir", small}}}}));
  for (uint64_t s = 0; s < 12; ++s) {
    loss_of(*filling, tiny_batch(4, 200 + s), 1);
    const auto disk = filling->prefix_cache_stats();
    EXPECT_LE(disk->disk_bytes, int64_t{1} << 20);
    EXPECT_LE(directory_bytes(small), int64_t{1} << 20);
    EXPECT_EQ(directory_bytes(small), disk->disk_bytes);
  }
  EXPECT_GT(filling->prefix_cache_stats()->disk_entries, 0);
  EXPECT_LT(filling->prefix_cache_stats()->disk_entries, 48);  // evicted: not every sample fits
  std::filesystem::remove_all(small);

  // The memory tier stays within its bound (1 MiB holds only some of 40 samples here).
  auto bounded = make_policy(tiny_spec({{"prefix_cache", {{"memory_mb", 1}}}}));
  for (uint64_t s = 0; s < 10; ++s) loss_of(*bounded, tiny_batch(4, 100 + s), 1);
  const auto stats = dynamic_cast<smolvla::SmolVLAPolicy&>(*bounded).prefix_cache_stats();
  EXPECT_LE(stats->memory_bytes, int64_t{1} << 20);
  EXPECT_GT(stats->memory_entries, 0);
  EXPECT_LT(stats->memory_entries, 40);
  std::filesystem::remove_all(dir);
}

TEST(SmolVLA, CheckpointHasLeRobotsNamesAndDtypesAndLoadsBack) {
  auto policy = make_policy(tiny_spec());
  const std::string dir = test::make_temp_dir("smolvla-checkpoint");
  save_pretrained(*policy, dir);
  const ParameterSet saved = read_safetensors(dir + "/model.safetensors");
  auto dtype_of = [&](const std::string& name) {
    const Tensor* t = saved.find(name);
    EXPECT_NE(t, nullptr) << name;
    return t ? t->dtype : DType::F64;
  };
  // The frozen backbone in LeRobot's BF16; trained tensors in the float32 they train in.
  EXPECT_EQ(dtype_of("model.vlm_with_expert.vlm.model.vision_model.embeddings.patch_embedding.weight"), DType::BF16);
  EXPECT_EQ(dtype_of("model.vlm_with_expert.vlm.model.text_model.layers.0.self_attn.q_proj.weight"), DType::BF16);
  EXPECT_EQ(dtype_of("model.vlm_with_expert.lm_expert.layers.0.self_attn.q_proj.weight"), DType::F32);
  EXPECT_EQ(dtype_of("model.vlm_with_expert.lm_expert.layers.1.self_attn.k_proj.weight"), DType::F32);
  EXPECT_EQ(dtype_of("model.action_time_mlp_in.weight"), DType::F32);
  const auto config = test::read_json(dir + "/config.json");
  EXPECT_EQ(config["type"], "smolvla");
  EXPECT_EQ(config["vlm_model_name"], kTinyBackbone);
  EXPECT_EQ(config["input_features"].size(), 3u);

  PolicySpec reload;
  reload.type = "smolvla";
  reload.pretrained = dir;
  auto loaded = make_policy(reload);
  const Batch batch = tiny_batch(2, 3);
  // BF16 storage rounds the backbone, so compare the reloaded model with itself saved again.
  const std::string again = dir + "/again";
  save_pretrained(*loaded, again);
  EXPECT_EQ(read_safetensors(again + "/model.safetensors").tensors.size(), saved.tensors.size());
  auto twice = make_policy({"smolvla", nlohmann::json::object(), again, {}});
  EXPECT_DOUBLE_EQ(loss_of(*loaded, batch, 2).item<double>(), loss_of(*twice, batch, 2).item<double>());
  std::filesystem::remove_all(dir);
}

TEST(SmolVLA, SamplesAChunkOfTheActionWidth) {
  auto policy = make_policy(tiny_spec());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor actions = policy->sample_actions(tiny_batch(2, 4), gen);
  EXPECT_EQ(actions.sizes().vec(), (std::vector<int64_t>{2, 8, 6}));
  EXPECT_TRUE(actions.isfinite().all().item<bool>());
}

TEST(SmolVLA, BadConfigurationNamesTheField) {
  try {
    make_policy(tiny_spec({{"chunk_sise", 8}, {"prefix_cache", {{"disk_mb", 10}}}}));
    FAIL() << "expected SpecError";
  } catch (const SpecError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("spec.policy.config.chunk_sise: unknown field"), std::string::npos) << what;
    EXPECT_NE(what.find("spec.policy.config.prefix_cache.dir: required"), std::string::npos) << what;
  }
  try {
    make_policy(tiny_spec({{"vlm_model_name", "/nowhere/backbone"}}));
    FAIL() << "expected SpecError";
  } catch (const SpecError& e) {
    EXPECT_NE(std::string(e.what()).find("spec.policy.config.vlm_model_name"), std::string::npos) << e.what();
  }
  PolicySpec wrong_train = tiny_spec();
  wrong_train.train = {"model.not_a_module"};
  EXPECT_THROW(make_policy(wrong_train), SpecError);
}

TEST(SmolVLA, BatchWithoutThePolicysCamerasIsAClearError) {
  auto policy = make_policy(tiny_spec());
  Batch batch = tiny_batch(2, 5);
  batch.images = {{"observation.images.wrist", at::rand({2, 3, 40, 56})}};
  try {
    loss_of(*policy, batch, 1);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("observation.images.wrist"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace zk0
