#pragma once
// The layout the fuzzed receivers and decoders expect: two small float tensors, as a policy's
// trainable set (tests/fuzz/make_seeds.cpp writes their seeds for it).
#include <cstring>

#include "core/tensor/manifest.h"

namespace zk0::fuzz {

inline const Manifest& trainable_layout() {
  static const Manifest m = [] {
    ParameterSet p;
    p.tensors.push_back(make_tensor("expert.weight", DType::F32, {4, 3}));
    p.tensors.push_back(make_tensor("expert.bias", DType::F32, {3}));
    for (auto& t : p.tensors) std::memset(t.bytes.data(), 0, t.bytes.size());
    return build_manifest(p);
  }();
  return m;
}

}  // namespace zk0::fuzz
