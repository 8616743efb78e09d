// A FederationRun from anywhere (kubectl apply, a file handed to `zk0 run`), and the same bytes as
// a FederationMembership: every problem is a SpecError; nothing else may escape and nothing may
// crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/spec/federation_spec.h"
#include "core/spec/membership_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    zk0::parse_membership(text);
  } catch (const zk0::SpecError&) {
  }
  try {
    const zk0::FederationSpec spec = zk0::parse_spec(text);
    // What parses must resolve, read back to the same spec, and fingerprint.
    const std::string yaml = zk0::to_yaml(spec);
    if (zk0::to_yaml(zk0::parse_spec(yaml)) != yaml) __builtin_trap();
    zk0::resume_fingerprint(spec);
    zk0::cluster_only_fields(spec);
  } catch (const zk0::SpecError&) {
  }
  return 0;
}
