#pragma once
// LeRobot's SmolVLA as the reference (tests/parity/smolvla_reference.py in the parity Python) and
// `zk0 policy run` as ours, compared tensor by tensor.
#include <ATen/ATen.h>

#include <map>
#include <string>

namespace zk0::test {

// Runs the reference script with these arguments; fails the test on a non-zero exit.
std::string reference(const std::string& args);

// The named tensors of a safetensors file.
std::map<std::string, at::Tensor> load(const std::string& file);

// `zk0 policy run --gradients` of a pretrained folder on inputs, on ZK0_PARITY_DEVICE (cpu unless set).
std::map<std::string, at::Tensor> ours(const std::string& model, const std::string& inputs, const std::string& out);

// Every tensor LeRobot wrote must be in ours, equal within 1e-4 of its largest magnitude; and the
// gradients are of exactly the same parameters (LeRobot writes one per requires_grad).
void expect_same(const std::map<std::string, at::Tensor>& expected, const std::map<std::string, at::Tensor>& actual,
                 const std::string& what);

}  // namespace zk0::test
