#pragma once
// FederationMembership (zk0.io/v1alpha1): a robot owner's own cluster taking part in a run that
// another cluster hosts. The owner's operator runs one worker pod next to the owner's data; the
// pod joins the run at `endpoint` with the join token in `tokenSecret` (`zk0-worker join`),
// keeps its key and certificate on a claim of its own, and only dials out. Everything about the
// run comes from the run's aggregator at the join; this spec says only what is the owner's.
#include <string>

#include "core/spec/federation_spec.h"

namespace zk0 {

struct MembershipSpec {
  std::string name;
  std::string namespace_;
  std::string endpoint;       // HOST:PORT: the run's status.joinEndpoint
  SecretKeyRef token_secret;  // the join token the run's owner handed over; key defaults to "token"
  DatasetSpec dataset;        // a volumeClaim, or a path (a host path under the operator's allowed prefixes)
  ResourcesSpec resources;    // gpu > 0: the worker trains on CUDA
  PodPlacementSpec pod;
  // The claim <name>-state: the worker's key, certificate, the run's spec as it was sent, and the
  // optimizer state; a pod that is replaced rejoins with them instead of a spent token.
  std::string storage_size = "1Gi";
  std::string storage_class;
};

// Parses and validates a FederationMembership document; throws SpecError listing every problem
// with its field path.
MembershipSpec parse_membership(const std::string& yaml_text);

}  // namespace zk0
