#include "core/policy/policy.h"

#include <torch/torch.h>

#include <cstring>
#include <filesystem>

#include "core/policy/flow_matching_mlp.h"
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

at::Device Policy::device() {
  const auto params = parameters();
  return params.empty() ? at::Device(at::kCPU) : params.front().second.device();
}

std::unique_ptr<Policy> make_policy(const PolicySpec& spec) {
  std::unique_ptr<Policy> policy;
  if (spec.type == "flow-matching-mlp") {
    policy = make_flow_matching_mlp(FlowMatchingMlpConfig::from_json(spec.config), spec.train);
  } else {
    throw SpecError({"spec.policy.type: '" + spec.type + "' is not available in this build"});
  }
  for (auto& [name, t] : policy->parameters()) t.set_requires_grad(policy->is_trainable(name));
  if (!spec.pretrained.empty()) {
    const std::string file = (std::filesystem::path(spec.pretrained) / "model.safetensors").string();
    load_parameter_set(policy->parameters(), read_safetensors(file));
  }
  return policy;
}

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

namespace {
at::ScalarType scalar_type(DType d) {
  switch (d) {
    case DType::F32: return at::kFloat;
    case DType::BF16: return at::kBFloat16;
    case DType::F16: return at::kHalf;
    case DType::F64: return at::kDouble;
    case DType::I64: return at::kLong;
    case DType::BOOL: return at::kBool;
  }
  return at::kFloat;
}
}  // namespace

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
                                          at::TensorOptions().dtype(scalar_type(src->dtype)));
    t.copy_(view);
  }
}

void save_pretrained(Policy& policy, const std::string& dir) {
  std::filesystem::create_directories(dir);
  write_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), to_parameter_set(policy.parameters()),
                    {{"format", "pt"}});
  nlohmann::json config = policy.config_json();
  config["type"] = policy.type();
  write_file_atomic((std::filesystem::path(dir) / "config.json").string(), config.dump(2) + "\n");
}

}  // namespace zk0
