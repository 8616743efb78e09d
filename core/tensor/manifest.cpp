#include "core/tensor/manifest.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace zk0 {

uint64_t Manifest::total_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.byte_length;
  return n;
}

std::string canonical_encoding(const std::vector<TensorEntry>& tensors, const std::optional<ManifestEncoding>& encoding) {
  std::ostringstream out;
  out << "zk0-manifest-v1\n";
  for (const auto& t : tensors) {
    out << t.name << '\t' << dtype_name(t.dtype) << '\t';
    for (size_t i = 0; i < t.shape.size(); ++i) out << (i ? "," : "") << t.shape[i];
    out << '\t' << t.byte_length << '\t' << to_hex(t.sha256) << '\n';
  }
  if (encoding) out << "encoding\t" << encoding->codec << '\t' << to_hex(encoding->decoded_digest) << '\n';
  return out.str();
}

Sha256Digest manifest_digest(const std::vector<TensorEntry>& tensors, const std::optional<ManifestEncoding>& encoding) {
  const std::string text = canonical_encoding(tensors, encoding);
  return sha256(text.data(), text.size());
}

Manifest build_manifest(const ParameterSet& parameters, int threads) {
  Manifest m = layout_of(parameters);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < parameters.tensors.size();)
      m.tensors[i].sha256 = sha256(parameters.tensors[i].bytes.data(), parameters.tensors[i].bytes.size());
  };
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(parameters.tensors.size())));
  std::vector<std::thread> pool;
  for (int i = 1; i < n; ++i) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  m.digest = manifest_digest(m.tensors);
  return m;
}

Manifest layout_of(const ParameterSet& parameters) {
  Manifest m;
  for (const Tensor& t : parameters.tensors) {
    TensorEntry e;
    e.name = t.name;
    e.dtype = t.dtype;
    e.shape = t.shape;
    e.byte_length = t.bytes.size();
    m.tensors.push_back(std::move(e));
  }
  return m;
}

Manifest build_encoded_manifest(const ParameterSet& encoded, ManifestEncoding encoding, int threads) {
  Manifest m = build_manifest(encoded, threads);
  m.encoding = std::move(encoding);
  m.digest = manifest_digest(m.tensors, m.encoding);
  return m;
}

void check_manifest_consistent(const Manifest& manifest) {
  std::set<std::string> seen;
  for (const auto& t : manifest.tensors) {
    if (t.name.empty() || t.name.find_first_of("\t\n") != std::string::npos)
      throw std::runtime_error("manifest: invalid tensor name '" + t.name + "'");
    if (!seen.insert(t.name).second)
      throw std::runtime_error("manifest: tensor '" + t.name + "' appears twice");
    uint64_t needed = 0;
    try {
      needed = tensor_bytes(t.dtype, t.shape);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error("manifest: tensor '" + t.name + "': " + e.what());
    }
    if (needed != t.byte_length)
      throw std::runtime_error("manifest: tensor '" + t.name + "' declares " + std::to_string(t.byte_length) + " bytes but " +
                               dtype_name(t.dtype) + shape_string(t.shape) + " needs " + std::to_string(needed));
  }
  if (manifest.encoding && manifest.encoding->codec.find_first_of("\t\n") != std::string::npos)
    throw std::runtime_error("manifest: invalid codec '" + manifest.encoding->codec + "'");
  if (manifest_digest(manifest.tensors, manifest.encoding) != manifest.digest)
    throw std::runtime_error("manifest: digest " + manifest.digest_hex() +
                             " does not match its entries");
}

void check_same_layout(const Manifest& expected, const Manifest& actual) {
  if (expected.tensors.size() != actual.tensors.size())
    throw std::runtime_error("expected " + std::to_string(expected.tensors.size()) +
                             " tensors, got " + std::to_string(actual.tensors.size()));
  for (size_t i = 0; i < expected.tensors.size(); ++i) {
    const auto& e = expected.tensors[i];
    const auto& a = actual.tensors[i];
    if (e.name != a.name)
      throw std::runtime_error("tensor " + std::to_string(i) + ": expected '" + e.name + "', got '" +
                               a.name + "'");
    if (e.dtype != a.dtype || e.shape != a.shape)
      throw std::runtime_error("tensor '" + e.name + "': expected " + dtype_name(e.dtype) +
                               shape_string(e.shape) + ", got " + dtype_name(a.dtype) +
                               shape_string(a.shape));
  }
}

}  // namespace zk0
