#include "core/policy/policy.h"

#include <torch/torch.h>

#include <cstring>
#include <filesystem>

#include "core/lerobot/hub_cache.h"
#include "core/policy/flow_matching_mlp.h"
#include "core/policy/smolvla/smolvla_policy.h"
#include "core/tensor/safetensors.h"
#include "core/util/fs.h"

namespace zk0 {

bool Policy::is_trainable(const std::string& name) const {
  for (const auto& group : trainable_groups_)
    if (name == group || name.rfind(group + ".", 0) == 0) return true;
  return false;
}

NamedTensors Policy::trainable_parameters() {
  NamedTensors out;
  for (auto& [name, t] : parameters())
    if (is_trainable(name)) out.emplace_back(name, t);
  return out;
}

NamedTensors Policy::frozen_parameters() {
  NamedTensors out;
  for (auto& [name, t] : parameters())
    if (!is_trainable(name)) out.emplace_back(name, t);
  return out;
}

void Policy::share_frozen(Policy& other) {
  const NamedTensors mine = frozen_parameters(), theirs = other.frozen_parameters();
  if (mine.size() != theirs.size() || type() != other.type())
    throw std::logic_error("share_frozen: " + type() + " and " + other.type() + " policies of different shapes");
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < mine.size(); ++i) {
    const at::Tensor& a = mine[i].second;
    const at::Tensor& b = theirs[i].second;
    if (mine[i].first != theirs[i].first || a.sizes() != b.sizes() || a.device() != b.device())
      throw std::logic_error("share_frozen: " + mine[i].first + " differs from " + theirs[i].first);
    const_cast<at::Tensor&>(a).set_(b);
  }
}

at::Device Policy::device() {
  const auto params = parameters();
  return params.empty() ? at::Device(at::kCPU) : params.front().second.device();
}

namespace {
// A folder, or a Hub model id read from the Hugging Face cache (lerobot/smolvla_base).
std::string resolve_pretrained(const std::string& pretrained) {
  if (pretrained.empty() || std::filesystem::is_directory(pretrained)) return pretrained;
  if (looks_like_hub_id(pretrained)) {
    try {
      return hub_snapshot_path(pretrained, "main", hub_cache_root(), HubRepoType::Model);
    } catch (const std::exception& e) {
      throw SpecError({"spec.policy.pretrained: '" + pretrained + "' is not a folder, and " + e.what()});
    }
  }
  throw SpecError({"spec.policy.pretrained: " + pretrained + " is not a folder"});
}
}  // namespace

std::unique_ptr<Policy> make_policy(const PolicySpec& requested) {
  PolicySpec spec = requested;
  spec.pretrained = resolve_pretrained(requested.pretrained);
  std::unique_ptr<Policy> policy;
  if (spec.type == "flow-matching-mlp") {
    policy = make_flow_matching_mlp(FlowMatchingMlpConfig::from_json(spec.config), spec.train);
  } else if (spec.type == "smolvla") {
    policy = smolvla::make_smolvla(spec);
  } else {
    throw SpecError({"spec.policy.type: '" + spec.type + "' is not available in this build (flow-matching-mlp, smolvla)"});
  }
  for (auto& [name, t] : policy->parameters()) t.set_requires_grad(policy->is_trainable(name));
  if (!spec.pretrained.empty()) {
    const std::string file = (std::filesystem::path(spec.pretrained) / "model.safetensors").string();
    try {
      policy->load_checkpoint(read_safetensors(file));
    } catch (const std::exception& e) {
      throw std::runtime_error(file + ": " + e.what());
    }
  }
  return policy;
}

ParameterSet Policy::checkpoint_tensors() { return to_parameter_set(parameters()); }

void Policy::load_checkpoint(const ParameterSet& checkpoint) { load_parameter_set(parameters(), checkpoint); }

ParameterSet to_parameter_set(const NamedTensors& tensors) {
  ParameterSet out;
  out.tensors.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    const at::Tensor cpu = t.detach().to(at::kCPU, at::kFloat).contiguous();
    Tensor dst = make_tensor(name, DType::F32, cpu.sizes().vec());
    std::memcpy(dst.bytes.data(), cpu.data_ptr(), dst.bytes.size());
    out.tensors.push_back(std::move(dst));
  }
  return out;
}

at::ScalarType aten_dtype(DType d) {
  switch (d) {
    case DType::F32: return at::kFloat;
    case DType::BF16: return at::kBFloat16;
    case DType::F16: return at::kHalf;
    case DType::F64: return at::kDouble;
    case DType::I64: return at::kLong;
    case DType::BOOL: return at::kBool;
    case DType::U8: return at::kByte;
  }
  return at::kFloat;
}

at::Tensor to_aten(const Tensor& t) {
  return at::from_blob(const_cast<uint8_t*>(t.bytes.data()), t.shape, at::TensorOptions().dtype(aten_dtype(t.dtype)))
      .clone();
}

Tensor copy_tensor(const std::string& name, const at::Tensor& tensor) {
  const at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
  DType dtype;
  switch (cpu.scalar_type()) {
    case at::kFloat: dtype = DType::F32; break;
    case at::kBFloat16: dtype = DType::BF16; break;
    case at::kHalf: dtype = DType::F16; break;
    case at::kDouble: dtype = DType::F64; break;
    case at::kLong: dtype = DType::I64; break;
    case at::kBool: dtype = DType::BOOL; break;
    case at::kByte: dtype = DType::U8; break;
    default: throw std::invalid_argument("tensor '" + name + "': unsupported dtype");
  }
  Tensor out = make_tensor(name, dtype, cpu.sizes().vec());
  std::memcpy(out.bytes.data(), cpu.data_ptr(), out.bytes.size());
  return out;
}

void load_parameter_set(const NamedTensors& into, const ParameterSet& from) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : into) {
    const Tensor* src = from.find(name);
    if (!src) throw std::runtime_error("parameter '" + name + "' is missing");
    if (src->shape != t.sizes().vec())
      throw std::runtime_error("parameter '" + name + "': expected shape " + shape_string(t.sizes().vec()) + ", got " +
                               shape_string(src->shape));
    const at::Tensor view = at::from_blob(const_cast<uint8_t*>(src->bytes.data()), src->shape,
                                          at::TensorOptions().dtype(aten_dtype(src->dtype)));
    t.copy_(view);
  }
}

void save_pretrained(Policy& policy, const std::string& dir) {
  std::filesystem::create_directories(dir);
  write_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), policy.checkpoint_tensors(),
                    {{"format", "pt"}});
  nlohmann::ordered_json config = policy.config_json();
  config["type"] = policy.type();
  write_file_atomic((std::filesystem::path(dir) / "config.json").string(), config.dump(2) + "\n");
  policy.write_extra_files(dir);
}

}  // namespace zk0
