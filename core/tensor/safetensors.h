#pragma once
// safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header mapping names to dtype, shape and byte offsets, then the raw data.
#include <map>
#include <string>

#include "core/tensor/parameter_set.h"

namespace zk0 {

// Writes to a temporary file in the same directory, fsyncs and renames: a reader never sees a
// half-written file and a crash leaves the previous version intact.
void write_safetensors(const std::string& path, const ParameterSet& parameters,
                       const std::map<std::string, std::string>& metadata = {});

// Throws std::runtime_error naming the file and the problem (truncated, bad header, overlap).
ParameterSet read_safetensors(const std::string& path,
                              std::map<std::string, std::string>* metadata = nullptr);

}  // namespace zk0
