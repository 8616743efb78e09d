#include "core/codec/update_delta.h"

#include "core/aggregation/parallel.h"

namespace zk0 {

ParameterSet combine(const ParameterSet& a, const ParameterSet& b, float sign, int threads) {
  if (a.tensors.size() != b.tensors.size())
    throw CodecError(std::to_string(a.tensors.size()) + " tensors against " + std::to_string(b.tensors.size()));
  ParameterSet out;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const Tensor& t = a.tensors[i];
    const Tensor& u = b.tensors[i];
    if (t.name != u.name || t.shape != u.shape || t.dtype != DType::F32 || u.dtype != DType::F32)
      throw CodecError("tensor '" + t.name + "' and '" + u.name + "' are not the same float32 layout");
    // Written in one pass into memory never touched before (no copy of `a` first).
    Tensor& o = out.tensors.emplace_back(make_tensor(t.name, DType::F32, t.shape));
    float* z = o.as<float>();
    const float* x = t.as<float>();
    const float* y = u.as<float>();
    parallel_for(static_cast<size_t>(t.numel()), threads, [&](size_t begin, size_t end) {
      for (size_t j = begin; j < end; ++j) z[j] = x[j] + sign * y[j];
    });
  }
  return out;
}

EncodedUpdate encode_trained_update(const ParameterSet& trained, const ParameterSet& base, const CodecSettings& codec,
                                    const ErrorFeedback* feedback, int threads) {
  EncodedUpdate u;
  const ParameterSet delta = combine(trained, base, -1.0f, threads);
  u.compensated = feedback ? feedback->compensate(delta) : delta;
  u.encoded = encode_update(u.compensated, codec, threads);
  u.decoded = decode_update(u.encoded, layout_of(u.compensated), codec, threads);
  u.manifest = build_encoded_manifest(u.encoded, {codec.describe(), build_manifest(u.decoded, threads).digest}, threads);
  return u;
}

ParameterSet apply_encoded_update(const ParameterSet& base, const Manifest& base_layout, const ParameterSet& encoded,
                                  const Manifest& manifest, const CodecSettings& codec, int threads) {
  if (!manifest.encoding || manifest.encoding->codec != codec.describe())
    throw CodecError(std::string("codec ") + codec_name(codec.kind) + ": the update's manifest does not bind '" + codec.describe() + "'");
  const ParameterSet delta = decode_update(encoded, base_layout, codec, threads);
  const Manifest decoded = build_manifest(delta, threads);
  if (decoded.digest != manifest.encoding->decoded_digest)
    throw CodecError(std::string("codec ") + codec_name(codec.kind) + ": the decoded update's digest " + decoded.digest_hex() +
                     " is not the " + to_hex(manifest.encoding->decoded_digest) + " its manifest binds");
  return combine(base, delta, 1.0f, threads);
}

}  // namespace zk0
