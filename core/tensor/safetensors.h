#pragma once
// safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header mapping names to dtype, shape and byte offsets, then the raw data.
// Headers come from anywhere (a checkpoint, a Hub download, a cache file): every length, offset
// and shape is checked before anything is allocated.
#include <map>
#include <string>

#include "core/tensor/parameter_set.h"

namespace zk0 {

// The file's bytes.
std::string encode_safetensors(const ParameterSet& parameters, const std::map<std::string, std::string>& metadata = {});

// Writes to a temporary file in the same directory, fsyncs and renames: a reader never sees a
// half-written file and a crash leaves the previous version intact.
void write_safetensors(const std::string& path, const ParameterSet& parameters,
                       const std::map<std::string, std::string>& metadata = {});

// Throws std::runtime_error naming the file and the problem (truncated, bad header, overlap).
ParameterSet read_safetensors(const std::string& path,
                              std::map<std::string, std::string>* metadata = nullptr);
// The same for bytes in memory; `name` stands for the file in errors.
ParameterSet decode_safetensors(const std::string& bytes, const std::string& name,
                                std::map<std::string, std::string>* metadata = nullptr);

}  // namespace zk0
