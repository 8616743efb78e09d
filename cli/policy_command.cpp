// zk0 policy run: a SmolVLA checkpoint on recorded inputs, writing what LeRobot's code computes
// along the way, so that an episode can be debugged (and the parity tests compare) tensor by tensor.
#include "cli/policy_command.h"

#include <torch/torch.h>

#include <iostream>
#include <map>
#include <optional>

#include "core/policy/smolvla/smolvla_policy.h"
#include "core/runtime/cpu_runtime.h"
#include "core/tensor/safetensors.h"
#include "core/util/exit_codes.h"

namespace zk0 {

namespace {

at::Device parse_device(const std::string& name) {
  std::optional<at::Device> device;
  try {
    device.emplace(name);
  } catch (const std::exception&) {
    throw std::invalid_argument("--device " + name + ": not a device (cpu, cuda, cuda:N)");
  }
  if (!device->is_cpu() && !device->is_cuda()) throw std::invalid_argument("--device " + name + ": only cpu and cuda run SmolVLA");
  if (device->is_cuda() && !torch::cuda::is_available())
    throw std::invalid_argument("--device " + name + ": this LibTorch sees no CUDA device");
  return *device;
}

int usage() {
  std::cerr
      << "usage:\n"
         "  zk0 policy run --pretrained DIR --inputs FILE.safetensors --output FILE.safetensors [--gradients]\n"
         "                 [--device cpu|cuda|cuda:N]\n"
         "      run a SmolVLA pretrained folder (LeRobot's config.json + model.safetensors) on named tensors:\n"
         "        observation.images.<camera> [B,3,H,W] in [0,1] (the config's VISUAL features), observation.state [B,S],\n"
         "        the task as metadata \"task\" (one string, or a JSON list of B) or observation.language.tokens [B,L]\n"
         "        with observation.language.attention_mask; optionally noise [B,chunk,max_action_dim], time [B],\n"
         "        action [B,chunk,A] and action_is_pad [B,chunk]. State and action are in the model's normalised space.\n"
         "      writes prefix.embeddings/pad_mask/att_flags, kv.<layer>.key/value (the prefix's keys and values),\n"
         "        actions (a sampled chunk; from `noise` when given), and with noise, time and action: velocity,\n"
         "        losses (elementwise), loss.masked, loss.unmasked, loss; --gradients adds grad.<parameter> of `loss`\n"
         "        for every trainable parameter\n"
         "      every weight in float32 on any device, and on CUDA without TF32, so that the figures are LeRobot's\n"
         "        float32 reference's, not those of training's bfloat16 backbone\n";
  return 2;
}

int run(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "run") return usage();
  std::map<std::string, std::string> o;
  bool gradients = false;
  for (int i = 2; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "--gradients") {
      gradients = true;
    } else if ((key == "--pretrained" || key == "--inputs" || key == "--output" || key == "--device") && i + 1 < argc) {
      o[key.substr(2)] = argv[++i];
    } else {
      std::cerr << "zk0 policy run: unknown or incomplete option " << key << "\n";
      return usage();
    }
  }
  if (!o.count("pretrained") || !o.count("inputs") || !o.count("output")) return usage();

  configure_cpu_runtime();
  const at::Device device = parse_device(o.count("device") ? o["device"] : "cpu");
  if (device.is_cuda()) {
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
  }
  PolicySpec spec;
  spec.type = "smolvla";
  spec.pretrained = o["pretrained"];
  std::unique_ptr<Policy> base = make_policy(spec);
  auto& policy = dynamic_cast<smolvla::SmolVLAPolicy&>(*base);
  policy.to(device, at::kFloat);
  const smolvla::Config& c = policy.model().config();

  std::map<std::string, std::string> metadata;
  std::map<std::string, at::Tensor> in;
  for (const auto& t : read_safetensors(o["inputs"], &metadata).tensors) in[t.name] = to_aten(t).to(device);
  const auto require = [&](const std::string& name) -> const at::Tensor& {
    if (!in.count(name)) throw std::invalid_argument(o["inputs"] + ": no tensor '" + name + "'");
    return in.at(name);
  };

  Batch batch;
  batch.state = require("observation.state").to(at::kFloat);
  for (const auto& [name, t] : in)
    if (name.rfind("observation.images.", 0) == 0) batch.images[name] = t.to(at::kFloat);
  std::pair<at::Tensor, at::Tensor> tokens;
  const bool has_tokens = in.count("observation.language.tokens") > 0;
  if (has_tokens) {
    tokens = {in.at("observation.language.tokens"), require("observation.language.attention_mask")};
  } else if (metadata.count("task")) {
    const auto task = nlohmann::json::parse(metadata.at("task"), nullptr, false);
    batch.task = task.is_array() ? task.get<std::vector<std::string>>()
                                 : std::vector<std::string>(static_cast<size_t>(batch.size()), metadata.at("task"));
  } else {
    throw std::invalid_argument(o["inputs"] + ": give the task as metadata \"task\" or observation.language.tokens");
  }
  const smolvla::PrefixInputs inputs = policy.prepare(batch, has_tokens ? &tokens : nullptr);

  ParameterSet out;
  const auto put = [&](const std::string& name, const at::Tensor& t) {
    out.tensors.push_back(copy_tensor(name, t.to(at::kCPU)));
  };
  {
    torch::NoGradGuard no_grad;
    const smolvla::Prefix prefix = policy.model().embed_prefix(inputs);
    put("prefix.embeddings", prefix.embeddings);
    put("prefix.pad_mask", prefix.pad_mask);
    put("prefix.att_flags", prefix.att_flags);
    const smolvla::KVCache kv = policy.model().prefill(prefix);
    for (size_t l = 0; l < kv.size(); ++l) {
      put("kv." + std::to_string(l) + ".key", kv[l].key);
      put("kv." + std::to_string(l) + ".value", kv[l].value);
    }
    at::Tensor noise = in.count("noise") ? in.at("noise").to(at::kFloat)
                                         : at::randn({batch.size(), c.chunk_size, c.max_action_dim}, at::TensorOptions(device));
    put("actions", policy.model().sample_actions(prefix, noise).narrow(-1, 0, c.action_dim));
  }
  if (in.count("action") && in.count("noise") && in.count("time")) {
    const FlowMatchingDraw d = flow_matching_at(policy.pad_action(in.at("action")), in.at("noise").to(at::kFloat),
                                                in.at("time").to(at::kFloat));
    const at::Tensor v = policy.velocity(inputs, d.x_t, d.time, smolvla::SmolVLAPolicy::PrefixPath::Joint);
    const at::Tensor is_pad = in.count("action_is_pad") ? in.at("action_is_pad").to(at::kBool) : at::Tensor();
    const at::Tensor masked = flow_matching_loss(v.narrow(-1, 0, c.action_dim), d.target.narrow(-1, 0, c.action_dim),
                                                 is_pad, LossReduction::Masked);
    const at::Tensor unmasked = flow_matching_loss(v, d.target, {}, LossReduction::Unmasked);
    const at::Tensor loss = c.reduction == LossReduction::Masked ? masked : unmasked;
    put("velocity", v);
    put("losses", (d.target - v).pow(2));
    put("loss.masked", masked);
    put("loss.unmasked", unmasked);
    put("loss", loss);
    if (gradients) {
      loss.backward();
      for (auto& [name, p] : policy.trainable_parameters())
        put("grad." + name, p.grad().defined() ? p.grad() : at::zeros_like(p));
    }
  }
  write_safetensors(o["output"], out);
  std::cout << "wrote " << out.tensors.size() << " tensors to " << o["output"] << "\n";
  return 0;
}

}  // namespace

int policy_command(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const SpecError& e) {
    std::cerr << "zk0 policy: " << e.what() << "\n";
    return kExitInvalidInput;
  } catch (const std::invalid_argument& e) {  // arguments or inputs that no retry can fix
    std::cerr << "zk0 policy: " << e.what() << "\n";
    return kExitInvalidInput;
  } catch (const std::exception& e) {
    std::cerr << "zk0 policy: " << e.what() << "\n";
    return kExitError;
  }
}

}  // namespace zk0
