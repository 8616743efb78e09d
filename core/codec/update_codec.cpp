#include "core/codec/update_codec.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "core/aggregation/parallel.h"

namespace zk0 {
namespace {

// Below this many values a tensor is coded on the calling thread.
constexpr size_t kParallelValues = size_t{1} << 16;

std::string tensor_problem(const CodecSettings& codec, const std::string& tensor, const std::string& what) {
  return std::string("codec ") + codec_name(codec.kind) + ": tensor '" + tensor + "': " + what;
}

uint16_t bf16_round(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  // Round to nearest, ties to even: add 0x7fff plus the lowest kept bit, then truncate.
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float bf16_value(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}

// Runs task(i) for i in [0, count) on up to `threads` threads taking indices in turn: for work
// items of unequal size (tensors), where fixed slices would leave threads idle. The first
// exception a task throws is rethrown on the calling thread once all have stopped.
template <typename Task>
void for_each_index(size_t count, int threads, Task&& task) {
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr error;
  const auto run = [&] {
    for (size_t i; (i = next.fetch_add(1)) < count;) {
      try {
        task(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        next = count;
      }
    }
  };
  const int n = std::max(1, std::min(threads, static_cast<int>(count)));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(run);
  run();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

uint64_t int8_blocks(int64_t numel, int64_t block) { return (static_cast<uint64_t>(numel) + block - 1) / block; }
uint64_t topk_count(int64_t numel, double fraction) {
  if (numel == 0) return 0;
  return std::clamp<uint64_t>(static_cast<uint64_t>(std::ceil(fraction * static_cast<double>(numel))), 1, numel);
}

void check_finite(const float* x, size_t n, const CodecSettings& codec, const std::string& tensor) {
  bool finite = true;
  for (size_t i = 0; i < n; ++i) finite &= std::isfinite(x[i]);
  if (!finite) throw CodecError(tensor_problem(codec, tensor, "a non-finite value cannot be encoded"));
}

// x · 0 is 0 for every finite x and NaN otherwise: a sum of them flags a non-finite value
// without a branch in the loop, which keeps the loops vectorised.
Tensor encode_bf16(const Tensor& t, int threads, const CodecSettings& codec) {
  Tensor out = make_tensor(t.name, DType::BF16, t.shape);
  const float* x = t.as<float>();
  uint16_t* y = out.as<uint16_t>();
  std::atomic<bool> finite{true};
  parallel_slices(static_cast<size_t>(t.numel()), threads, [&](int, size_t b, size_t e) {
    float poison = 0;
#pragma omp simd reduction(+ : poison)
    for (size_t i = b; i < e; ++i) {
      poison += x[i] * 0.0f;
      y[i] = bf16_round(x[i]);
    }
    if (std::isnan(poison)) finite = false;
  }, kParallelValues);
  if (!finite) throw CodecError(tensor_problem(codec, t.name, "a non-finite value cannot be encoded"));
  return out;
}

Tensor encode_int8(const Tensor& t, int threads, const CodecSettings& codec) {
  const int64_t n = t.numel(), block = codec.block_size;
  const uint64_t blocks = int8_blocks(n, block);
  Tensor out = make_tensor(t.name, DType::U8, {static_cast<int64_t>(encoded_bytes_bound(codec, n))});
  const float* x = t.as<float>();
  float* scales = out.as<float>();
  int8_t* codes = reinterpret_cast<int8_t*>(out.bytes.data() + 4 * blocks);
  std::atomic<bool> finite{true};
  parallel_slices(blocks, threads, [&](int, size_t b0, size_t b1) {
    for (size_t blk = b0; blk < b1; ++blk) {
      const size_t begin = blk * block, end = std::min<size_t>(begin + block, n);
      float absmax = 0, poison = 0;
#pragma omp simd reduction(max : absmax) reduction(+ : poison)
      for (size_t i = begin; i < end; ++i) {
        poison += x[i] * 0.0f;
        absmax = std::max(absmax, std::fabs(x[i]));
      }
      if (std::isnan(poison)) {
        finite = false;  // refused below; a NaN is never converted to an integer
        continue;
      }
      const float scale = absmax / 127.0f;
      scales[blk] = scale;
      const float inverse = scale > 0 ? 1.0f / scale : 0.0f;
      // |x · inverse| <= 127 up to rounding, hence the clamp, done on the integers: clamping the
      // floats first kept GCC from vectorising the loop ("control flow in loop"). Adding and
      // subtracting 1.5 · 2^23 rounds to nearest even in the FPU's own mode, which vectorises
      // where lrint does not.
      constexpr float kRound = 12582912.0f;
      const float* __restrict in = x;  // locals: an int8_t store could otherwise alias the captured pointers
      int8_t* __restrict out_codes = codes;
#pragma omp simd
      for (size_t i = begin; i < end; ++i) {
        const int32_t q = static_cast<int32_t>((in[i] * inverse + kRound) - kRound);
        out_codes[i] = static_cast<int8_t>(std::clamp(q, -127, 127));
      }
    }
  }, 64);
  if (!finite) throw CodecError(tensor_problem(codec, t.name, "a non-finite value cannot be encoded"));
  return out;
}

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

// The indices of the k largest magnitudes of x, in order; of the values equal to the k-th largest,
// the first ones by position (so the choice is deterministic). Selecting among all n values costs
// a copy and an nth_element over them: instead a strided sample of the magnitudes gives a floor a
// little below the k-th largest, one pass keeps the candidates at or above it (about 1.25 k of
// them, in index order), and the k-th largest is found among those alone. Every value at or above
// the k-th largest is a candidate, so the result is the same; when the sample misjudged (fewer
// than k candidates), or the tensor is too small to sample, every value is one (no list kept).
std::vector<uint32_t> largest_magnitudes(const float* x, uint64_t n, uint64_t k) {
  std::vector<uint32_t> candidates;
  constexpr uint64_t kSample = uint64_t{1} << 14;
  if (n >= 8 * kSample && 8 * k <= n) {
    std::vector<float> sample(kSample);
    for (uint64_t j = 0; j < kSample; ++j) sample[j] = std::fabs(x[j * n / kSample]);
    // About rank · n / kSample values lie at or above the sample's rank-th largest.
    const uint64_t rank = std::min(kSample - 1, k * kSample * 5 / 4 / n + 16);
    std::nth_element(sample.begin(), sample.begin() + static_cast<int64_t>(rank), sample.end(), std::greater<float>());
    const float floor = sample[rank];
    candidates.reserve(k + k / 2 + 64);
    for (uint64_t i = 0; i < n; ++i)
      if (std::fabs(x[i]) >= floor) candidates.push_back(static_cast<uint32_t>(i));
    if (candidates.size() < k) candidates.clear();
  }
  const auto each_candidate = [&](auto&& visit) {
    if (candidates.empty())
      for (uint64_t i = 0; i < n; ++i) visit(static_cast<uint32_t>(i));
    else
      for (const uint32_t i : candidates) visit(i);
  };
  std::vector<float> magnitudes;
  magnitudes.reserve(candidates.empty() ? n : candidates.size());
  each_candidate([&](uint32_t i) { magnitudes.push_back(std::fabs(x[i])); });
  const uint64_t c = magnitudes.size();
  std::nth_element(magnitudes.begin(), magnitudes.begin() + static_cast<int64_t>(c - k), magnitudes.end());
  const float threshold = magnitudes[c - k];
  // Fewer than k values lie strictly above the k-th largest; values equal to it fill the rest.
  const uint64_t above = static_cast<uint64_t>(
      std::count_if(magnitudes.begin() + static_cast<int64_t>(c - k), magnitudes.end(), [&](float m) { return m > threshold; }));
  uint64_t equal_wanted = k - above;
  std::vector<uint32_t> kept;
  kept.reserve(k);
  each_candidate([&](uint32_t i) {
    const float m = std::fabs(x[i]);
    if (m > threshold || (m == threshold && equal_wanted > 0 && equal_wanted--)) kept.push_back(i);
  });
  return kept;
}

Tensor encode_topk(const Tensor& t, const CodecSettings& codec) {
  const int64_t n = t.numel();
  const float* x = t.as<float>();
  check_finite(x, static_cast<size_t>(n), codec, t.name);
  const uint64_t k = topk_count(n, codec.fraction);
  const std::vector<uint32_t> kept = k > 0 ? largest_magnitudes(x, static_cast<uint64_t>(n), k) : std::vector<uint32_t>{};
  std::vector<uint8_t> gaps;
  gaps.reserve(kept.size() * 2);
  uint64_t previous = 0;
  for (size_t j = 0; j < kept.size(); ++j) {
    put_varint(gaps, j == 0 ? kept[j] : kept[j] - previous);
    previous = kept[j];
  }
  Tensor out = make_tensor(t.name, DType::U8, {static_cast<int64_t>(4 + 4 * k + gaps.size())});
  uint8_t* p = out.bytes.data();
  const uint32_t k32 = static_cast<uint32_t>(k);
  std::memcpy(p, &k32, 4);
  float* values = reinterpret_cast<float*>(p + 4);
  for (size_t j = 0; j < kept.size(); ++j) values[j] = x[kept[j]];
  std::memcpy(p + 4 + 4 * k, gaps.data(), gaps.size());
  return out;
}

void decode_bf16(const Tensor& in, Tensor& out, int threads) {
  const uint16_t* y = in.as<uint16_t>();
  float* x = out.as<float>();
  parallel_slices(static_cast<size_t>(out.numel()), threads, [&](int, size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) x[i] = bf16_value(y[i]);
  }, kParallelValues);
}

void decode_int8(const Tensor& in, Tensor& out, int threads, const CodecSettings& codec) {
  const int64_t n = out.numel(), block = codec.block_size;
  const uint64_t blocks = int8_blocks(n, block);
  const float* scales = in.as<float>();
  const int8_t* codes = reinterpret_cast<const int8_t*>(in.bytes.data() + 4 * blocks);
  for (uint64_t b = 0; b < blocks; ++b)
    if (!std::isfinite(scales[b]) || scales[b] < 0)
      throw CodecError(tensor_problem(codec, in.name, "block " + std::to_string(b) + " has scale " + std::to_string(scales[b])));
  float* x = out.as<float>();
  parallel_slices(blocks, threads, [&](int, size_t b0, size_t b1) {
    for (size_t blk = b0; blk < b1; ++blk) {
      const size_t begin = blk * block, end = std::min<size_t>(begin + block, n);
      const float scale = scales[blk];
      for (size_t i = begin; i < end; ++i) x[i] = static_cast<float>(codes[i]) * scale;
    }
  }, 64);
}

void decode_topk(const Tensor& in, Tensor& out, const CodecSettings& codec) {
  const uint64_t n = static_cast<uint64_t>(out.numel()), size = in.bytes.size();
  const uint8_t* p = in.bytes.data();
  uint32_t k = 0;
  if (size >= 4) std::memcpy(&k, p, 4);
  if (size < 4 || k != topk_count(static_cast<int64_t>(n), codec.fraction) || size < 4 + 4ull * k)
    throw CodecError(tensor_problem(codec, in.name, std::to_string(size) + " bytes do not hold the " +
                                                        std::to_string(topk_count(static_cast<int64_t>(n), codec.fraction)) +
                                                        " values of this codec"));
  float* x = out.as<float>();
  std::fill(x, x + n, 0.0f);
  const float* values = reinterpret_cast<const float*>(p + 4);
  const uint8_t* gap = p + 4 + 4ull * k;
  const uint8_t* end = p + size;
  uint64_t index = 0;
  for (uint32_t j = 0; j < k; ++j) {
    uint64_t v = 0;
    int shift = 0;
    for (;;) {
      if (gap == end || shift > 35) throw CodecError(tensor_problem(codec, in.name, "index " + std::to_string(j) + " is truncated or too long"));
      const uint8_t byte = *gap++;
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      shift += 7;
      if (!(byte & 0x80)) break;
    }
    if (j > 0 && v == 0) throw CodecError(tensor_problem(codec, in.name, "index " + std::to_string(j) + " repeats the previous one"));
    index = j == 0 ? v : index + v;
    if (index >= n) throw CodecError(tensor_problem(codec, in.name, "index " + std::to_string(index) + " is beyond its " + std::to_string(n) + " values"));
    if (!std::isfinite(values[j])) throw CodecError(tensor_problem(codec, in.name, "value " + std::to_string(j) + " is not finite"));
    x[index] = values[j];
  }
  if (gap != end) throw CodecError(tensor_problem(codec, in.name, std::to_string(end - gap) + " bytes follow the last index"));
}

}  // namespace

const char* codec_name(CodecKind kind) {
  switch (kind) {
    case CodecKind::None: return "none";
    case CodecKind::Bf16: return "bf16";
    case CodecKind::Int8: return "int8";
    case CodecKind::TopK: return "topk";
  }
  return "?";
}

CodecKind codec_from_name(const std::string& name) {
  for (CodecKind k : {CodecKind::None, CodecKind::Bf16, CodecKind::Int8, CodecKind::TopK})
    if (name == codec_name(k)) return k;
  throw std::invalid_argument("unknown codec '" + name + "' (none, bf16, int8, topk)");
}

std::string CodecSettings::describe() const {
  switch (kind) {
    case CodecKind::None: return "";
    case CodecKind::Bf16: return "bf16";
    case CodecKind::Int8: return "int8 block_size=" + std::to_string(block_size);
    case CodecKind::TopK: {
      std::ostringstream s;
      s.precision(17);
      s << "topk fraction=" << fraction;
      return s.str();
    }
  }
  return "";
}

CodecSettings codec_from_description(const std::string& description) {
  CodecSettings c;
  if (description.empty()) return c;
  const size_t space = description.find(' ');
  c.kind = codec_from_name(description.substr(0, space));
  const std::string rest = space == std::string::npos ? "" : description.substr(space + 1);
  const auto value_of = [&](const std::string& key) {
    if (rest.rfind(key + "=", 0) != 0) throw std::invalid_argument("codec '" + description + "' lacks " + key);
    return rest.substr(key.size() + 1);
  };
  try {
    if (c.kind == CodecKind::Int8) {
      size_t used = 0;
      const std::string v = value_of("block_size");
      c.block_size = std::stoll(v, &used);
      if (used != v.size() || c.block_size < 1 || c.block_size > (1 << 20)) throw std::invalid_argument("block_size");
    } else if (c.kind == CodecKind::TopK) {
      size_t used = 0;
      const std::string v = value_of("fraction");
      c.fraction = std::stod(v, &used);
      if (used != v.size() || !(c.fraction > 0 && c.fraction <= 1)) throw std::invalid_argument("fraction");
    } else if (!rest.empty()) {
      throw std::invalid_argument("parameters");
    }
  } catch (const std::logic_error&) {
    throw std::invalid_argument("codec description '" + description + "' is malformed");
  }
  if (c.describe() != description) throw std::invalid_argument("codec description '" + description + "' is not canonical");
  return c;
}

uint64_t encoded_bytes_bound(const CodecSettings& codec, int64_t numel) {
  const uint64_t n = static_cast<uint64_t>(numel);
  switch (codec.kind) {
    case CodecKind::None: return 4 * n;
    case CodecKind::Bf16: return 2 * n;
    case CodecKind::Int8: return 4 * int8_blocks(numel, codec.block_size) + n;
    case CodecKind::TopK: return 4 + 9 * topk_count(numel, codec.fraction);  // a value, a varint of at most 5 bytes
  }
  return 0;
}

void check_encoded_layout(const Manifest& plain, const CodecSettings& codec, const Manifest& actual) {
  if (!actual.encoding || actual.encoding->codec != codec.describe())
    throw std::runtime_error("expected an update encoded as '" + codec.describe() + "', got " +
                             (actual.encoding ? "'" + actual.encoding->codec + "'" : std::string("plain tensors")));
  if (plain.tensors.size() != actual.tensors.size())
    throw std::runtime_error("expected " + std::to_string(plain.tensors.size()) + " tensors, got " + std::to_string(actual.tensors.size()));
  for (size_t i = 0; i < plain.tensors.size(); ++i) {
    const TensorEntry& p = plain.tensors[i];
    const TensorEntry& a = actual.tensors[i];
    if (p.name != a.name) throw std::runtime_error("tensor " + std::to_string(i) + ": expected '" + p.name + "', got '" + a.name + "'");
    const int64_t n = static_cast<int64_t>(p.byte_length / dtype_size(p.dtype));
    const uint64_t bound = encoded_bytes_bound(codec, n);
    const bool fits = codec.kind == CodecKind::Bf16 ? a.dtype == DType::BF16 && a.shape == p.shape
                      : codec.kind == CodecKind::TopK ? a.dtype == DType::U8 && a.shape.size() == 1 && a.shape[0] >= 4 &&
                                                            static_cast<uint64_t>(a.shape[0]) <= bound
                                                      : a.dtype == DType::U8 && a.shape == std::vector<int64_t>{static_cast<int64_t>(bound)};
    if (!fits)
      throw std::runtime_error("tensor '" + p.name + "': " + dtype_name(a.dtype) + shape_string(a.shape) + " is not its " + codec_name(codec.kind) +
                               " encoding (" + std::to_string(n) + " values)");
  }
}

ParameterSet encode_update(const ParameterSet& delta, const CodecSettings& codec, int threads) {
  ParameterSet out;
  out.tensors.resize(delta.tensors.size());
  for (const Tensor& t : delta.tensors)
    if (t.dtype != DType::F32) throw CodecError(tensor_problem(codec, t.name, std::string("only F32 is encoded, not ") + dtype_name(t.dtype)));
  switch (codec.kind) {
    case CodecKind::None:
      out = delta;
      break;
    case CodecKind::Bf16:
      for (size_t i = 0; i < delta.tensors.size(); ++i) out.tensors[i] = encode_bf16(delta.tensors[i], threads, codec);
      break;
    case CodecKind::Int8:
      for (size_t i = 0; i < delta.tensors.size(); ++i) out.tensors[i] = encode_int8(delta.tensors[i], threads, codec);
      break;
    case CodecKind::TopK:
      for_each_index(delta.tensors.size(), threads, [&](size_t i) { out.tensors[i] = encode_topk(delta.tensors[i], codec); });
      break;
  }
  return out;
}

ParameterSet decode_update(const ParameterSet& encoded, const Manifest& layout, const CodecSettings& codec, int threads) {
  if (encoded.tensors.size() != layout.tensors.size())
    throw CodecError(std::string("codec ") + codec_name(codec.kind) + ": " + std::to_string(encoded.tensors.size()) +
                     " encoded tensors for a layout of " + std::to_string(layout.tensors.size()));
  ParameterSet out;
  out.tensors.resize(layout.tensors.size());
  for (size_t i = 0; i < layout.tensors.size(); ++i) {
    const TensorEntry& want = layout.tensors[i];
    const Tensor& in = encoded.tensors[i];
    if (in.name != want.name) throw CodecError(tensor_problem(codec, in.name, "arrived where '" + want.name + "' belongs"));
    if (want.dtype != DType::F32) throw CodecError(tensor_problem(codec, want.name, "the layout's tensor is not F32"));
    const int64_t n = static_cast<int64_t>(want.byte_length / 4);
    const DType dtype = codec.kind == CodecKind::Bf16 ? DType::BF16 : codec.kind == CodecKind::None ? DType::F32 : DType::U8;
    const bool fixed = codec.kind != CodecKind::TopK;
    if (in.dtype != dtype || (fixed && in.bytes.size() != encoded_bytes_bound(codec, n)) || in.bytes.size() > encoded_bytes_bound(codec, n))
      throw CodecError(tensor_problem(codec, in.name, std::string(dtype_name(in.dtype)) + " of " + std::to_string(in.bytes.size()) +
                                                          " bytes is not its encoding of " + std::to_string(n) + " values"));
    out.tensors[i] = make_tensor(want.name, DType::F32, want.shape);
  }
  switch (codec.kind) {
    case CodecKind::None:
      for (size_t i = 0; i < out.tensors.size(); ++i) std::memcpy(out.tensors[i].bytes.data(), encoded.tensors[i].bytes.data(), out.tensors[i].bytes.size());
      break;
    case CodecKind::Bf16:
      for (size_t i = 0; i < out.tensors.size(); ++i) decode_bf16(encoded.tensors[i], out.tensors[i], threads);
      break;
    case CodecKind::Int8:
      for (size_t i = 0; i < out.tensors.size(); ++i) decode_int8(encoded.tensors[i], out.tensors[i], threads, codec);
      break;
    case CodecKind::TopK:
      for_each_index(out.tensors.size(), threads, [&](size_t i) { decode_topk(encoded.tensors[i], out.tensors[i], codec); });
      break;
  }
  return out;
}

}  // namespace zk0
