#pragma once
// Integers read from files others wrote (datasets, checkpoints, tokenizers, safetensors headers).
// nlohmann's get<int64_t>() static_casts a float, which is undefined behaviour once the value is out
// of range (a fuzzed "1e300"); these accept a JSON integer, or a float that holds an integer exactly,
// and throw nlohmann's type_error otherwise, so callers' json::exception handlers name the file.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace zk0 {

template <typename Json>
int64_t json_integer(const Json& j) {
  if (j.is_number_unsigned() && j.template get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    throw Json::type_error::create(302, "integer " + j.dump() + " is out of range", &j);
  if (j.is_number_integer()) return j.template get<int64_t>();
  if (j.is_number_float()) {
    const double v = j.template get<double>();
    // 2^63 is exactly representable; anything at or past it does not fit.
    if (std::isfinite(v) && v == std::floor(v) && v >= -9223372036854775808.0 && v < 9223372036854775808.0)
      return static_cast<int64_t>(v);
  }
  throw Json::type_error::create(302, "must be an integer, not " + j.dump(), &j);
}

template <typename Json>
uint64_t json_unsigned(const Json& j) {
  if (j.is_number_unsigned()) return j.template get<uint64_t>();
  const int64_t v = json_integer(j);
  if (v < 0) throw Json::type_error::create(302, "must not be negative, not " + j.dump(), &j);
  return static_cast<uint64_t>(v);
}

template <typename Json>
std::vector<int64_t> json_integers(const Json& j) {
  if (!j.is_array()) throw Json::type_error::create(302, "must be an array of integers, not " + j.dump(), &j);
  std::vector<int64_t> out;
  out.reserve(j.size());
  for (const auto& v : j) out.push_back(json_integer(v));
  return out;
}

}  // namespace zk0
