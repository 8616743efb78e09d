#pragma once
// FedBuff's arithmetic (Nguyen et al. 2022; spec.strategy.asynchronous): an update trained from an
// older global joins the buffer of a newer one as that newer global plus its own delta, scaled by
// how stale it is. The buffer is then any rule's round (the mean, optionally clipped), and the
// server step follows as in synchronous rounds. The coordinator's buffered rounds use these.
#include "core/spec/federation_spec.h"
#include "core/tensor/parameter_set.h"

namespace zk0 {

// s(t) for an update `staleness` versions behind: inverseSqrt 1/sqrt(1 + t), constant 1.
double staleness_weight(StalenessWeight kind, int staleness);

// current + scale * (update - base), tensor by tensor, in place of `update` (same F32 layout;
// throws otherwise). When base is current and scale is 1 the update comes back as it was.
ParameterSet rebase_update(ParameterSet update, const ParameterSet& base, const ParameterSet& current, double scale);

}  // namespace zk0
