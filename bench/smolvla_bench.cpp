// zk0-smolvla-bench: SmolVLA training-step throughput, zk0 with and without the frozen-prefix
// cache against LeRobot's Python SmolVLA on the same model in the same run.
//   --size small   a CPU-sized SmolVLA (default): 2 cameras, 8+8 layers at width 256/192
//   --size full    SmolVLA at full size (SmolVLM2-500M backbone, 450M parameters) with random
//                  weights; for a GPU
//   --device cpu|cuda  --batch B  --steps N  --smoke (tiny and short: CI runs it)
// One step is LeRobot's: flow-matching loss, backward, gradient clip at 10, AdamW on the
// trainable parameters (zk0's FlatAdamW, as the worker trains). The cached run cycles over a
// pool of samples whose prefixes are cached after a first pass, as every epoch after the first
// is in training. Each side reports its median step.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "core/optim/flat_adamw.h"
#include "core/policy/smolvla/smolvla_policy.h"
#include "core/runtime/cpu_runtime.h"
#include "support/test_support.h"

#ifdef ZK0_CUDA_MEMORY_STATS
#include <c10/cuda/CUDACachingAllocator.h>
#endif

using namespace zk0;
using Clock = std::chrono::steady_clock;

namespace {

const char* kSmall = R"({"text": {"hidden": 256, "intermediate": 683, "heads": 4, "kv_heads": 2, "layers": 8, "vlm_layers": 8},
  "vision": {"hidden": 128, "intermediate": 512, "layers": 4, "heads": 4},
  "vocab": 512, "image_size": 128, "patch_size": 16, "scale_factor": 2, "cameras": 2, "chunk": 50,
  "max_state_dim": 32, "max_action_dim": 32, "state": 6, "action": 6, "expert_width_multiplier": 0.75,
  "self_attn_every_n_layers": 2})";
const char* kSmoke = R"({"text": {"hidden": 64, "intermediate": 128, "heads": 4, "kv_heads": 2, "layers": 2, "vlm_layers": 2},
  "vision": {"hidden": 32, "intermediate": 64, "layers": 1, "heads": 2},
  "vocab": 300, "image_size": 32, "patch_size": 8, "scale_factor": 2, "cameras": 2, "chunk": 10,
  "max_state_dim": 32, "max_action_dim": 32, "state": 6, "action": 6, "expert_width_multiplier": 0.75,
  "self_attn_every_n_layers": 2})";
const char* kFull = R"({"text": {"hidden": 960, "intermediate": 2560, "heads": 15, "kv_heads": 5, "layers": 32, "vlm_layers": 16},
  "vision": {"hidden": 768, "intermediate": 3072, "layers": 12, "heads": 12},
  "vocab": 49280, "image_size": 512, "patch_size": 16, "scale_factor": 4, "cameras": 3, "chunk": 50,
  "max_state_dim": 32, "max_action_dim": 32, "state": 6, "action": 6, "expert_width_multiplier": 0.75,
  "self_attn_every_n_layers": 2})";

std::string python() { return ZK0_PARITY_PYTHON; }
std::string script() { return std::string(ZK0_SOURCE_DIR) + "/tests/parity/smolvla_reference.py"; }

Batch make_batch(const smolvla::Config& c, int64_t b, uint64_t seed, const at::Device& device) {
  at::manual_seed(seed);
  Batch batch;
  batch.state = at::randn({b, c.state_dim});
  batch.action = at::randn({b, c.chunk_size, c.action_dim});
  batch.action_is_pad = at::zeros({b, c.chunk_size}, at::kBool);
  for (const auto& key : c.image_keys) batch.images[key] = at::rand({b, 3, c.resize_height, c.resize_width});
  for (int64_t i = 0; i < b; ++i) batch.task.push_back("pick up the cube number " + std::to_string(seed * 1000 + i));
  return batch.to(device);
}

// Multiply-adds of the linear layers and attention per sample, x2: forward FLOPs.
double forward_flops(const smolvla::Config& c, bool cached) {
  const auto& b = c.backbone;
  const double patches = std::pow(b.image_size / b.patch_size, 2), img_tokens = c.tokens_per_image();
  const double cams = static_cast<double>(c.num_cameras());
  const double prefix = cams * img_tokens + c.tokenizer_max_length + 1, h = c.chunk_size;
  const double eh = c.expert_hidden(), q = b.text_heads * b.head_dim, kv = b.text_kv_heads * b.head_dim;
  double vision = patches * (4 * b.vision_hidden * b.vision_hidden + 2 * b.vision_hidden * b.vision_intermediate) +
                  2 * patches * patches * b.vision_hidden;
  vision = b.vision_layers * vision + patches * 3 * b.patch_size * b.patch_size * b.vision_hidden +
           img_tokens * b.vision_hidden * b.scale_factor * b.scale_factor * b.text_hidden;
  const double text_layer_per_token = b.text_hidden * (2 * q + 2 * kv) + 3 * b.text_hidden * b.text_intermediate;
  const double vlm_tokens = cached ? 1 : prefix;  // with the cache only the state token runs
  double total = cached ? 0 : cams * vision;
  for (int64_t l = 0; l < c.vlm_layers(); ++l) {
    total += vlm_tokens * text_layer_per_token + 2 * vlm_tokens * prefix * q;
    const bool cross = c.is_cross_attention_layer(l);
    total += h * (eh * 2 * q + 3 * eh * c.expert_intermediate()) + (cross ? 2 * prefix * kv * kv : 2 * h * eh * kv);
    total += 2 * h * (prefix + h) * q;
  }
  total += h * (c.max_action_dim * eh * 2 + 3 * eh * eh);
  return 2 * total;
}

using PrefixPath = smolvla::SmolVLAPolicy::PrefixPath;

// The CUDA caching allocator's peak since the last reset, in GiB; -1 where it is not built in
// (a CPU build, or LibTorch without CUDA's headers).
void reset_peak_memory(const at::Device& device) {
#ifdef ZK0_CUDA_MEMORY_STATS
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
#endif
}
double peak_memory_gib(const at::Device& device) {
#ifdef ZK0_CUDA_MEMORY_STATS
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return static_cast<double>(stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak) /
           (1 << 30);
  }
#endif
  return -1;
}

struct Throughput {
  double samples_per_second;
  double peak_gib;
};

Throughput zk0_samples_per_second(smolvla::SmolVLAPolicy& policy, const at::Device& device, int64_t batch, int steps,
                                  PrefixPath path, int pool) {
  reset_peak_memory(device);
  const smolvla::Config& c = policy.model().config();
  std::vector<at::Tensor> params;
  for (auto& [name, t] : policy.trainable_parameters()) params.push_back(t);
  FlatAdamW optimizer(params, AdamWOptions{0.9, 0.95, 1e-8, 1e-10});
  std::vector<Batch> batches;
  for (int i = 0; i < pool; ++i) batches.push_back(make_batch(c, batch, static_cast<uint64_t>(i), device));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const auto step = [&](const Batch& b) {
    smolvla::PrefixInputs in = policy.prepare(b);
    const FlowMatchingDraw d = draw_flow_matching(policy.pad_action(b.action.to(at::kCPU)), gen);
    const at::Tensor v = policy.velocity(in, d.x_t.to(device), d.time.to(device), path);
    const at::Tensor loss = flow_matching_loss(v, d.target.to(device), {}, LossReduction::Unmasked);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step(1e-4, clip_scale(optimizer.grad_norm(), 10.0));
  };
  for (const auto& b : batches) step(b);  // warm-up; with the cache, fills it
  // The median step, as the LeRobot side measures it: a shared machine's stalls would otherwise
  // decide the figure.
  std::vector<double> seconds;
  for (int s = 0; s < steps; ++s) {
    if (device.is_cuda()) torch::cuda::synchronize();
    const auto t0 = Clock::now();
    step(batches[static_cast<size_t>(s) % batches.size()]);
    if (device.is_cuda()) torch::cuda::synchronize();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::nth_element(seconds.begin(), seconds.begin() + steps / 2, seconds.end());
  return {static_cast<double>(batch) / seconds[static_cast<size_t>(steps / 2)], peak_memory_gib(device)};
}

}  // namespace

int main(int argc, char** argv) {
  std::string size = "small", device_name = "cpu";
  int64_t batch = 8;
  int steps = 9;
  bool smoke = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--smoke") smoke = true;
    else if (a == "--size" && i + 1 < argc) size = argv[++i];
    else if (a == "--device" && i + 1 < argc) device_name = argv[++i];
    else if (a == "--batch" && i + 1 < argc) batch = std::stoll(argv[++i]);
    else if (a == "--steps" && i + 1 < argc) steps = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: zk0-smolvla-bench [--size small|full] [--device cpu|cuda] [--batch B] [--steps N] [--smoke]\n");
      return 2;
    }
  }
  if (smoke) size = "smoke", batch = 2, steps = 2;
  configure_cpu_runtime();
  const at::Device device(device_name == "cuda" ? at::kCUDA : at::kCPU);
  const std::string dir = test::make_temp_dir("smolvla-bench");
  std::ofstream(dir + "/config.json") << (size == "full" ? kFull : size == "small" ? kSmall : kSmoke);
  test::run_command(python() + " " + script() + " build " + dir + "/model " + dir + "/config.json");

  PolicySpec spec;
  spec.type = "smolvla";
  spec.pretrained = dir + "/model";
  auto base = make_policy(spec);
  auto& policy = dynamic_cast<smolvla::SmolVLAPolicy&>(*base);
  policy.to(device);
  const smolvla::Config& c = policy.model().config();
  int64_t trainable = 0, total = 0;
  for (auto& [n, t] : policy.parameters()) total += t.numel();
  for (auto& [n, t] : policy.trainable_parameters()) trainable += t.numel();
  std::printf("zk0-smolvla-bench: size=%s device=%s batch=%lld params=%lld trainable=%lld threads=%d\n", size.c_str(),
              device_name.c_str(), static_cast<long long>(batch), static_cast<long long>(total),
              static_cast<long long>(trainable), at::get_num_threads());
  // A training step costs about 3x the forward of what gets gradients and 1x of what does not.
  const double forward_all = forward_flops(c, false), forward_live = forward_flops(c, true);
  const double flops_joint = 3 * forward_all, flops_recompute = forward_all + 2 * forward_live,
               flops_cached = 3 * forward_live;
  std::printf("flops/sample/step: %.3g joint (LeRobot's pass), %.3g prefix recomputed without autograd, %.3g cached\n",
              flops_joint, flops_recompute, flops_cached);

  const std::string out = test::run_command(python() + " " + script() + " bench " + dir + "/model " +
                                            std::to_string(batch) + " " + std::to_string(steps) + " " + device_name);
  // The reference prints its result as the last line, after whatever its libraries log.
  const auto last_line = out.find_last_not_of('\n');
  const auto line_start = out.rfind('\n', last_line);
  const nlohmann::json theirs = nlohmann::json::parse(out.substr(line_start == std::string::npos ? 0 : line_start + 1));
  const double lerobot = theirs["samples_per_second"].get<double>();
  const Throughput joint = zk0_samples_per_second(policy, device, batch, steps, PrefixPath::Joint, 1);
  const Throughput uncached = zk0_samples_per_second(policy, device, batch, steps, PrefixPath::Recompute, 1);
  const Throughput cached = zk0_samples_per_second(policy, device, batch, steps, PrefixPath::Cached, std::min(steps, 4));
  std::printf("lerobot         %8.2f samples/s  (Python, baseline; parameters by dtype %s)\n", lerobot,
              theirs["parameter_dtypes"].dump().c_str());
  std::printf("zk0 joint       %8.2f samples/s  ratio=%.2f vs lerobot (LeRobot's own computation)\n",
              joint.samples_per_second, joint.samples_per_second / lerobot);
  std::printf("zk0 no cache    %8.2f samples/s  ratio=%.2f vs lerobot (goal >= 1.0 on CPU, 1.5 on GPU)\n",
              uncached.samples_per_second, uncached.samples_per_second / lerobot);
  std::printf("zk0 with cache  %8.2f samples/s  ratio=%.2f vs lerobot (goal >= 10 on GPU)\n", cached.samples_per_second,
              cached.samples_per_second / lerobot);
  if (device.is_cuda()) {
    // H100 SXM and H200 share the Hopper GH100's dense bfloat16 peak.
    std::printf("mfu (bf16 dense peak 989 TFLOP/s, H100/H200 SXM): %.1f%% joint, %.1f%% no cache, %.1f%% with cache\n",
                100 * joint.samples_per_second * flops_joint / 989e12,
                100 * uncached.samples_per_second * flops_recompute / 989e12,
                100 * cached.samples_per_second * flops_cached / 989e12);
    std::printf("peak memory (GiB): lerobot %.1f, zk0 joint %.1f, no cache %.1f, with cache %.1f\n",
                theirs.value("peak_memory_bytes", -1.0) / (1 << 30), joint.peak_gib, uncached.peak_gib, cached.peak_gib);
  }
  return 0;
}
