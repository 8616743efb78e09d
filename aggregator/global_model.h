#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor/manifest.h"
#include "core/tensor/parameter_set.h"

namespace zk0 {

// A parameter set as downloads serve it: a round's global, or the encoded step to it from the
// previous one (aggregator/download_steps.h).
struct GlobalModel {
  int round = 0;  // the round these parameters are the input of
  ParameterSet parameters;
  Manifest manifest;
  std::vector<uint32_t> chunk_checksums;  // for spec.transport.chunkSize, shared by every download
};

}  // namespace zk0
