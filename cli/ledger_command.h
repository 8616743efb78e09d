#pragma once

namespace zk0 {

// zk0 ledger verify OUTPUT_DIR [--ca CA.pem] [--checkpoint-key FILE] [--recompute]: checks a run's
// contribution ledger (core/ledger/verify.h) against its checkpoints and, with --recompute, its
// globals against the kept updates aggregated again (aggregator/recompute.h). Exit 0 when it holds, 1 with every
// problem named (entry and reason) when it does not, 2 on bad usage or unreadable input.
int ledger_command(int argc, char** argv);

}  // namespace zk0
