// The update codecs (core/codec): what each keeps and drops, their byte counts, error feedback,
// the manifest's binding of the codec, malformed encodings refused with the codec named, and the
// aggregator's encoded download steps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>

#include "aggregator/download_steps.h"
#include "core/codec/error_feedback.h"
#include "core/codec/update_delta.h"
#include "core/codec/update_codec.h"
#include "core/transport/parameter_stream.h"
#include "support/test_support.h"

namespace zk0 {
namespace {

Tensor random_tensor(const std::string& name, std::vector<int64_t> shape, uint32_t seed, float scale = 1e-3f) {
  Tensor t = make_tensor(name, DType::F32, std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] = normal(rng);
  return t;
}

ParameterSet random_update(uint32_t seed) {
  ParameterSet p;
  p.tensors.push_back(random_tensor("expert.layers.0.weight", {300, 500}, seed));  // several threads' worth
  p.tensors.push_back(random_tensor("expert.layers.0.bias", {500}, seed + 1));
  p.tensors.push_back(random_tensor("action_out_proj.weight", {7, 13}, seed + 2, 1.0f));  // a block shorter than block_size
  p.tensors.push_back(make_tensor("empty", DType::F32, {0}));
  return p;
}

const CodecSettings kBf16{CodecKind::Bf16};
const CodecSettings kInt8{CodecKind::Int8, 256};
const CodecSettings kTopK{CodecKind::TopK, 0, 0.01};

ParameterSet round_trip(const ParameterSet& delta, const CodecSettings& codec) {
  return decode_update(encode_update(delta, codec, 4), build_manifest(delta), codec, 4);
}

TEST(Codec, Bf16RoundsToNearestEvenAndHalvesTheBytes) {
  Tensor t = make_tensor("w", DType::F32, {6});
  float* x = t.as<float>();
  x[0] = 1.0f + std::ldexp(1.0f, -8);      // halfway between 1 and 1+2^-7: to even, 1
  x[1] = 1.0f + 3 * std::ldexp(1.0f, -8);  // halfway between 1+2^-7 and 1+2^-6: to even, 1+2^-6
  x[2] = 1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20);  // just above halfway: up
  x[3] = -3.0f;
  x[4] = 0.0f;
  x[5] = 3e38f;  // stays finite below bf16's largest
  ParameterSet p;
  p.tensors.push_back(t);
  const ParameterSet encoded = encode_update(p, kBf16, 1);
  EXPECT_EQ(encoded.tensors[0].dtype, DType::BF16);
  EXPECT_EQ(encoded.tensors[0].bytes.size(), 12u);
  const ParameterSet decoded = round_trip(p, kBf16);
  const float* y = decoded.tensors[0].as<float>();
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(y[2], 1.0f + std::ldexp(1.0f, -7));
  EXPECT_EQ(y[3], -3.0f);
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_TRUE(std::isfinite(y[5]));

  const ParameterSet delta = random_update(1);
  const ParameterSet back = round_trip(delta, kBf16);
  for (size_t i = 0; i < delta.tensors.size(); ++i)
    for (int64_t j = 0; j < delta.tensors[i].numel(); ++j) {
      const float a = delta.tensors[i].as<float>()[j], b = back.tensors[i].as<float>()[j];
      ASSERT_LE(std::fabs(a - b), std::ldexp(std::fabs(a), -8)) << delta.tensors[i].name << "[" << j << "]";
    }
}

TEST(Codec, Int8KeepsEachBlocksAbsmaxAndErrsByAtMostHalfAStep) {
  const ParameterSet delta = random_update(2);
  const ParameterSet encoded = encode_update(delta, kInt8, 4);
  const ParameterSet back = round_trip(delta, kInt8);
  for (size_t i = 0; i < delta.tensors.size(); ++i) {
    const int64_t n = delta.tensors[i].numel();
    const int64_t blocks = (n + 255) / 256;
    EXPECT_EQ(encoded.tensors[i].bytes.size(), static_cast<size_t>(4 * blocks + n));
    EXPECT_EQ(encoded_bytes_bound(kInt8, n), static_cast<uint64_t>(4 * blocks + n));
    const float* a = delta.tensors[i].as<float>();
    const float* b = back.tensors[i].as<float>();
    for (int64_t blk = 0; blk < blocks; ++blk) {
      float absmax = 0;
      for (int64_t j = blk * 256; j < std::min(n, (blk + 1) * 256); ++j) absmax = std::max(absmax, std::fabs(a[j]));
      const float step = absmax / 127;
      for (int64_t j = blk * 256; j < std::min(n, (blk + 1) * 256); ++j) {
        ASSERT_LE(std::fabs(a[j] - b[j]), step * 0.5f * (1 + 1e-5f) + 1e-30f) << delta.tensors[i].name << "[" << j << "]";
        if (std::fabs(a[j]) == absmax) {
          EXPECT_NEAR(b[j], a[j], absmax * 1e-6f);
        }
      }
    }
  }
  // A block of zeros decodes to zeros (scale 0, no division by it).
  ParameterSet zeros;
  zeros.tensors.push_back(make_tensor("z", DType::F32, {300}));
  std::memset(zeros.tensors[0].bytes.data(), 0, zeros.tensors[0].bytes.size());
  const ParameterSet zeros_back = round_trip(zeros, kInt8);
  for (int64_t j = 0; j < 300; ++j) {
    EXPECT_EQ(zeros_back.tensors[0].as<float>()[j], 0.0f);
  }
}

TEST(Codec, TopKKeepsExactlyTheLargestMagnitudes) {
  const ParameterSet delta = random_update(3);
  const ParameterSet encoded = encode_update(delta, kTopK, 4);
  const ParameterSet back = round_trip(delta, kTopK);
  for (size_t i = 0; i < delta.tensors.size(); ++i) {
    const int64_t n = delta.tensors[i].numel();
    const int64_t k = n == 0 ? 0 : static_cast<int64_t>(std::ceil(0.01 * n));
    const float* a = delta.tensors[i].as<float>();
    const float* b = back.tensors[i].as<float>();
    std::vector<float> magnitudes(a, a + n);
    for (float& m : magnitudes) m = std::fabs(m);
    std::sort(magnitudes.rbegin(), magnitudes.rend());
    int64_t kept = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (b[j] != 0) {
        ++kept;
        EXPECT_EQ(b[j], a[j]);  // kept values travel exactly
        EXPECT_GE(std::fabs(a[j]), magnitudes[k - 1]);
      } else {
        EXPECT_LE(std::fabs(a[j]), magnitudes[k - 1]);
      }
    }
    EXPECT_EQ(kept, k) << delta.tensors[i].name;
    EXPECT_LE(encoded.tensors[i].bytes.size(), encoded_bytes_bound(kTopK, n));
  }
  // 1% of 150,000 values: 1,500 values of 4 bytes and gaps of ~100 in one or two varint bytes.
  const uint64_t bytes = encoded.tensors[0].bytes.size();
  EXPECT_GT(bytes, 4u + 1500 * 5);
  EXPECT_LT(bytes, 4u + 1500 * 6);

  // Ties at the threshold: the first ones by position, so the choice is deterministic.
  ParameterSet ties;
  ties.tensors.push_back(make_tensor("t", DType::F32, {200}));
  for (int j = 0; j < 200; ++j) ties.tensors[0].as<float>()[j] = (j % 2 ? -1.0f : 1.0f);
  const CodecSettings two{CodecKind::TopK, 0, 0.01};
  const ParameterSet tied = round_trip(ties, two);
  const float* y = tied.tensors[0].as<float>();
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -1.0f);
  for (int j = 2; j < 200; ++j) EXPECT_EQ(y[j], 0.0f);
  // fraction 1 is lossless.
  const ParameterSet all = round_trip(delta, CodecSettings{CodecKind::TopK, 0, 1.0});
  for (size_t i = 0; i < delta.tensors.size(); ++i)
    EXPECT_EQ(std::memcmp(all.tensors[i].bytes.data(), delta.tensors[i].bytes.data(), delta.tensors[i].bytes.size()), 0);
}

// Large tensors take the sampled selection (a floor from a strided sample, then the exact k-th
// largest among the candidates): its encoding must be byte for byte the one of a plain sort by
// magnitude and then position, whatever the values, including when the sample misjudges.
TEST(Codec, TopKOfLargeTensorsIsTheExactSelectionWhateverTheDistribution) {
  const auto reference = [](const Tensor& t, double fraction) {
    const float* x = t.as<float>();
    const uint64_t n = static_cast<uint64_t>(t.numel()), k = static_cast<uint64_t>(std::ceil(fraction * static_cast<double>(n)));
    std::vector<uint32_t> order(n);
    for (uint32_t i = 0; i < n; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
    order.resize(k);
    std::sort(order.begin(), order.end());
    std::vector<uint8_t> out(4 + 4 * k);
    const uint32_t k32 = static_cast<uint32_t>(k);
    std::memcpy(out.data(), &k32, 4);
    for (uint64_t j = 0; j < k; ++j) std::memcpy(out.data() + 4 + 4 * j, &x[order[j]], 4);
    for (uint64_t j = 0; j < k; ++j)
      for (uint64_t gap = j == 0 ? order[0] : order[j] - order[j - 1];; gap >>= 7) {
        out.push_back(static_cast<uint8_t>(gap >= 0x80 ? (gap & 0x7f) | 0x80 : gap));
        if (gap < 0x80) break;
      }
    return out;
  };
  constexpr int64_t n = int64_t{1} << 18;
  std::mt19937 rng(5);
  std::vector<std::pair<std::string, std::function<float(int64_t)>>> cases = {
      {"gaussian", [&](int64_t) { return std::normal_distribution<float>(0, 1)(rng); }},
      {"five levels, ties at the threshold", [&](int64_t) { return static_cast<float>(static_cast<int>(rng() % 5) - 2); }},
      {"mostly zero", [&](int64_t i) { return i % 97 == 0 ? std::normal_distribution<float>(0, 1)(rng) : 0.0f; }},
      // Large values exactly where a stride of n / 2^14 = 16 samples and small ones elsewhere: the
      // sample's floor leaves fewer than k candidates at 10%, and the selection takes every value.
      {"sample fooled", [&](int64_t i) { return i % 16 == 0 ? 1.0f : std::normal_distribution<float>(0, 1e-3f)(rng); }},
  };
  for (const auto& [name, value] : cases) {
    ParameterSet p;
    p.tensors.push_back(make_tensor("w", DType::F32, {n}));
    for (int64_t i = 0; i < n; ++i) p.tensors[0].as<float>()[i] = value(i);
    for (const double fraction : {0.001, 0.01, 0.1}) {
      const CodecSettings codec{CodecKind::TopK, 0, fraction};
      const ParameterSet encoded = encode_update(p, codec, 2);
      EXPECT_EQ(encoded.tensors[0].bytes.size(), reference(p.tensors[0], fraction).size()) << name << " at " << fraction;
      EXPECT_TRUE(std::vector<uint8_t>(encoded.tensors[0].bytes.data(), encoded.tensors[0].bytes.data() + encoded.tensors[0].bytes.size()) ==
                  reference(p.tensors[0], fraction))
          << name << " at " << fraction;
    }
  }
}

TEST(Codec, ErrorFeedbackDeliversWhatWasDroppedLaterAndSurvivesARestart) {
  const std::string dir = test::make_temp_dir("codec-ef");
  const std::string path = dir + "/residual.safetensors";
  // Ten rounds of top-1%: the running sum of what was decoded plus the residual equals the sum of
  // what was trained, exactly up to float rounding, whatever the codec dropped.
  ParameterSet trained_sum = random_update(100), decoded_sum = random_update(100);
  for (auto* s : {&trained_sum, &decoded_sum})
    for (auto& t : s->tensors) std::memset(t.bytes.data(), 0, t.bytes.size());
  for (int round = 0; round < 10; ++round) {
    // A restart between rounds: a fresh object reads the residual back from disk.
    ErrorFeedback feedback(path, kTopK);
    if (round > 0) {
      EXPECT_FALSE(feedback.residual().tensors.empty());
    }
    const ParameterSet delta = random_update(200 + round);
    const ParameterSet compensated = feedback.compensate(delta);
    const ParameterSet decoded = round_trip(compensated, kTopK);
    feedback.keep(compensated, decoded);
    for (size_t i = 0; i < delta.tensors.size(); ++i)
      for (int64_t j = 0; j < delta.tensors[i].numel(); ++j) {
        trained_sum.tensors[i].as<float>()[j] += delta.tensors[i].as<float>()[j];
        decoded_sum.tensors[i].as<float>()[j] += decoded.tensors[i].as<float>()[j];
      }
  }
  const ErrorFeedback last(path, kTopK);
  double worst = 0, largest_residual = 0;
  for (size_t i = 0; i < trained_sum.tensors.size(); ++i)
    for (int64_t j = 0; j < trained_sum.tensors[i].numel(); ++j) {
      const double r = last.residual().tensors[i].as<float>()[j];
      worst = std::max(worst, std::fabs(trained_sum.tensors[i].as<float>()[j] - decoded_sum.tensors[i].as<float>()[j] - r));
      largest_residual = std::max(largest_residual, std::fabs(r));
    }
  EXPECT_LT(worst, 1e-5);
  EXPECT_GT(largest_residual, 1e-3);  // something was held back: the identity above is not vacuous

  // A residual of another codec is refused, naming the file.
  try {
    ErrorFeedback other(path, kInt8);
    FAIL() << "a top-k residual was accepted for int8";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("topk"), std::string::npos) << e.what();
  }
}

// The aggregator lost round 2 after the worker's upload (or retried it): the worker, restarted,
// encodes again from the same global and must send what it sent the first time, then go on as if
// the round had happened once.
TEST(Codec, ErrorFeedbackEncodesARoundFromTheSameGlobalAsTheFirstTime) {
  const std::string path = test::make_temp_dir("codec-ef-retry") + "/residual.safetensors";
  const ParameterSet d1 = random_update(11), d2 = random_update(12), d3 = random_update(13);
  const auto same = [](const ParameterSet& a, const ParameterSet& b) {
    for (size_t i = 0; i < a.tensors.size(); ++i)
      if (a.tensors[i].bytes.size() != b.tensors[i].bytes.size() ||
          std::memcmp(a.tensors[i].bytes.data(), b.tensors[i].bytes.data(), a.tensors[i].bytes.size()) != 0)
        return false;
    return a.tensors.size() == b.tensors.size();
  };
  const auto encode = [](ErrorFeedback& f, const std::string& base, const ParameterSet& delta) {
    f.begin(base);
    const ParameterSet compensated = f.compensate(delta);
    f.keep(compensated, round_trip(compensated, kTopK));
    return compensated;
  };
  ParameterSet first_round2;
  {
    ErrorFeedback feedback(path, kTopK);
    encode(feedback, "g1", d1);
    first_round2 = encode(feedback, "g2", d2);
  }
  ErrorFeedback restarted(path, kTopK);
  EXPECT_TRUE(same(encode(restarted, "g2", d2), first_round2));  // from the same global: as the first time
  EXPECT_TRUE(same(encode(restarted, "g2", d2), first_round2));  // and again
  ErrorFeedback once("", kTopK);  // the run where round 2 happened once
  encode(once, "g1", d1);
  encode(once, "g2", d2);
  EXPECT_TRUE(same(encode(restarted, "g3", d3), encode(once, "g3", d3)));
}

void expect_codec_error(const ParameterSet& encoded, const Manifest& layout, const CodecSettings& codec, const std::string& needle) {
  try {
    decode_update(encoded, layout, codec, 2);
    ADD_FAILURE() << "decoded a malformed " << codec_name(codec.kind) << " update (" << needle << ")";
  } catch (const CodecError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(std::string("codec ") + codec_name(codec.kind)), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

TEST(Codec, MalformedEncodingsAreRefusedNamingCodecAndTensor) {
  const ParameterSet delta = random_update(4);
  const Manifest layout = build_manifest(delta);
  {
    ParameterSet e = encode_update(delta, kTopK, 2);
    Tensor& t = e.tensors[1];
    t.bytes.data()[t.bytes.size() - 1] = 0xff;  // the last varint now continues past the end
    expect_codec_error(e, layout, kTopK, "expert.layers.0.bias");
  }
  {
    ParameterSet e = encode_update(delta, kTopK, 2);
    Tensor& t = e.tensors[2];
    const uint32_t k = 1;
    ASSERT_EQ(std::memcmp(t.bytes.data(), &k, 4), 0);
    t.bytes.data()[8] = 0x7f;  // the only index: 127, beyond the tensor's 91 values
    expect_codec_error(e, layout, kTopK, "beyond");
  }
  {
    ParameterSet e = encode_update(delta, kInt8, 2);
    const float nan = std::nanf("");
    std::memcpy(e.tensors[0].bytes.data(), &nan, 4);
    expect_codec_error(e, layout, kInt8, "scale");
  }
  {
    ParameterSet e = encode_update(delta, kBf16, 2);
    std::swap(e.tensors[0], e.tensors[1]);
    expect_codec_error(e, layout, kBf16, "belongs");
  }
  {
    ParameterSet e = encode_update(delta, kInt8, 2);
    e.tensors[1] = make_tensor(e.tensors[1].name, DType::U8, {10});
    expect_codec_error(e, layout, kInt8, "is not its encoding");
  }
  ParameterSet bad = delta;
  bad.tensors[1].as<float>()[7] = std::numeric_limits<float>::infinity();
  for (const auto& codec : {kBf16, kInt8, kTopK}) EXPECT_THROW(encode_update(bad, codec, 2), CodecError) << codec_name(codec.kind);
}

TEST(Codec, TheManifestBindsCodecParametersAndDecodedDigest) {
  const ParameterSet delta = random_update(5);
  const Manifest plain = build_manifest(delta);
  const ParameterSet encoded = encode_update(delta, kInt8, 2);
  const Manifest m = build_encoded_manifest(encoded, {kInt8.describe(), plain.digest});
  check_manifest_consistent(m);
  EXPECT_NE(m.digest, build_manifest(encoded).digest);
  for (const auto& edit : std::vector<std::function<void(Manifest&)>>{
           [](Manifest& x) { x.encoding->codec = "int8 block_size=512"; },
           [](Manifest& x) { x.encoding->decoded_digest[0] ^= 1; },
           [](Manifest& x) { x.encoding.reset(); },
       }) {
    Manifest edited = m;
    edit(edited);
    EXPECT_THROW(check_manifest_consistent(edited), std::runtime_error);
  }
  // Through the wire format and back.
  v1::Manifest proto;
  manifest_to_proto(m, &proto);
  const Manifest back = manifest_from_proto(proto);
  ASSERT_TRUE(back.encoding);
  EXPECT_EQ(*back.encoding, *m.encoding);
  EXPECT_EQ(back.digest, m.digest);
  EXPECT_EQ(codec_from_description(m.encoding->codec).block_size, 256);
  for (const char* wrong : {"int8", "int8 block_size=0", "topk fraction=2", "zstd", "bf16 x=1", "int8 block_size=0256"})
    EXPECT_THROW(codec_from_description(wrong), std::invalid_argument) << wrong;

  // A receiver expecting int8 takes this manifest, and refuses plain tensors or another codec.
  const auto receive = [&](const Manifest& sent, const CodecSettings& codec,
                           ParameterReceiver::Plain plain_too = ParameterReceiver::Plain::Refused) {
    ParameterReceiver r(plain, 1, codec, plain_too);
    v1::Manifest p;
    manifest_to_proto(sent, &p);
    r.on_manifest(p);
  };
  EXPECT_NO_THROW(receive(m, kInt8));
  const auto kind_of = [&](const Manifest& sent, const CodecSettings& codec,
                           ParameterReceiver::Plain plain_too = ParameterReceiver::Plain::Refused) {
    try {
      receive(sent, codec, plain_too);
    } catch (const TransferError& e) {
      return std::string(e.reason()) + ": " + e.what();
    }
    return std::string("accepted");
  };
  EXPECT_NE(kind_of(plain, kInt8).find("layout_mismatch"), std::string::npos) << kind_of(plain, kInt8);
  EXPECT_NE(kind_of(m, kTopK).find("layout_mismatch"), std::string::npos) << kind_of(m, kTopK);
  EXPECT_NE(kind_of(m, CodecSettings{}).find("encoded as 'int8 block_size=256'"), std::string::npos) << kind_of(m, CodecSettings{});
  // A download from a held global may be either the step or the whole global, never another codec.
  EXPECT_EQ(kind_of(m, kInt8, ParameterReceiver::Plain::Accepted), "accepted");
  EXPECT_EQ(kind_of(plain, kInt8, ParameterReceiver::Plain::Accepted), "accepted");
  EXPECT_NE(kind_of(m, kTopK, ParameterReceiver::Plain::Accepted).find("layout_mismatch"), std::string::npos);
}

GlobalModel global_of(ParameterSet p) {
  GlobalModel g;
  g.manifest = build_manifest(p);
  g.parameters = std::move(p);
  return g;
}

// A worker's side of a download step, as worker/client.cpp does it.
ParameterSet rebuilt_from(const ParameterSet& held, const GlobalModel& step, const CodecSettings& codec) {
  return apply_encoded_update(held, build_manifest(held), step.parameters, step.manifest, codec, 2);
}

TEST(DownloadSteps, WorkersRebuildEachGlobalBitForBitAndWalkTheChainWhileItIsCheaper) {
  for (const CodecSettings& codec : {kBf16, kInt8, kTopK}) {
    SCOPED_TRACE(codec.describe());
    DownloadSteps steps(codec, true, 1 << 16);
    const ParameterSet start = random_update(40);
    std::vector<GlobalModel> globals{global_of(start)};
    ParameterSet proposed_sum = start;
    for (int round = 1; round <= 4; ++round) {
      const ParameterSet proposed = combine(globals.back().parameters, random_update(40 + round), 1.0f, 2);
      proposed_sum = combine(proposed_sum, combine(proposed, globals.back().parameters, -1.0f, 2), 1.0f, 2);
      globals.push_back(global_of(steps.advance(globals[globals.size() - 1], proposed, round + 1)));
      const auto step = steps.step_from(globals[round - 1].manifest.digest_hex());
      ASSERT_TRUE(step);
      EXPECT_EQ(step->round, round + 1);
      EXPECT_LE(step->manifest.total_bytes(), globals.back().manifest.total_bytes() / 2 + 64);
      EXPECT_EQ(build_manifest(rebuilt_from(globals[round - 1].parameters, *step, codec)).digest, globals.back().manifest.digest);
    }
    // The steps kept cost less than the whole global together: bf16 keeps one step (two cost as
    // much as the global), int8 three, top-k at 1% all four. A worker holding the oldest global
    // a step is kept from walks the chain to the newest.
    size_t oldest = 0;
    while (!steps.step_from(globals[oldest].manifest.digest_hex())) ++oldest;
    EXPECT_EQ(oldest, codec.kind == CodecKind::TopK ? 0u : codec.kind == CodecKind::Int8 ? 1u : 3u);
    ParameterSet held = globals[oldest].parameters;
    for (std::shared_ptr<const GlobalModel> s; (s = steps.step_from(build_manifest(held).digest_hex()));)
      held = rebuilt_from(held, *s, codec);
    EXPECT_EQ(build_manifest(held).digest, globals.back().manifest.digest);
    EXPECT_FALSE(steps.step_from(globals.back().manifest.digest_hex()));
    // Error feedback: the globals' movement plus what is still held back is what was proposed.
    const ParameterSet caught_up = combine(globals.back().parameters, steps.residual(), 1.0f, 2);
    for (size_t t = 0; t < caught_up.tensors.size(); ++t)
      for (int64_t i = 0; i < caught_up.tensors[t].numel(); ++i)
        ASSERT_NEAR(caught_up.tensors[t].as<float>()[i], proposed_sum.tensors[t].as<float>()[i], 1e-5f) << t << " " << i;
    // Restored from a checkpoint, the residual makes the same next global.
    DownloadSteps resumed(codec, true, 1 << 16);
    resumed.restore(steps.residual());
    const ParameterSet next = combine(globals.back().parameters, random_update(50), 1.0f, 2);
    EXPECT_EQ(build_manifest(resumed.advance(globals.back(), next, 6)).digest, build_manifest(steps.advance(globals.back(), next, 6)).digest);
  }
}

}  // namespace
}  // namespace zk0
