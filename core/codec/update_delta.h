#pragma once
// A set travelling as an encoded delta under transport.compression, both ends. Uploads: the
// worker sends the delta from the round's global, encoded, with a manifest that binds the codec
// and the digest of the decoded delta; the aggregator decodes it, checks that digest and adds the
// global back, so everything after the upload (norm checks, strategies, records) sees trained
// parameters as without a codec. Downloads: the same two functions make and apply the encoded
// step from one global to the next (aggregator/download_steps.h).
#include "core/codec/error_feedback.h"
#include "core/codec/update_codec.h"
#include "core/tensor/manifest.h"

namespace zk0 {

// The most encoded download steps a worker walks to reach a round's global from the one it
// holds (aggregator/download_steps.h); further behind, it downloads the whole global.
constexpr size_t kMaxDownloadSteps = 8;

struct EncodedUpdate {
  ParameterSet encoded;  // what travels
  Manifest manifest;     // its manifest, the encoding bound in
  // For error feedback once the upload was accepted: the delta with the residual added, and
  // what the aggregator will decode from `encoded`.
  ParameterSet compensated;
  ParameterSet decoded;
};

// a + sign · b, tensor by tensor; the two must share names and float32 shapes (CodecError otherwise).
ParameterSet combine(const ParameterSet& a, const ParameterSet& b, float sign, int threads);

// trained − base, plus `feedback`'s residual when given, encoded with `codec`.
EncodedUpdate encode_trained_update(const ParameterSet& trained, const ParameterSet& base, const CodecSettings& codec,
                                    const ErrorFeedback* feedback, int threads);

// base + the delta `encoded` decodes to. Throws CodecError naming the codec and what failed: a
// manifest without this codec, a malformed tensor, a decoded delta whose digest is not the one
// the manifest binds.
ParameterSet apply_encoded_update(const ParameterSet& base, const Manifest& base_layout, const ParameterSet& encoded,
                                  const Manifest& manifest, const CodecSettings& codec, int threads);

}  // namespace zk0
