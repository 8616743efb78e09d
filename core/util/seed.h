#pragma once
// Deterministic seeding: every random draw in zk0 (sampling, noise, client selection, synthetic
// data, random initial weights) derives its seed from the run's seeds through these, so that a
// run and its resumption draw the same numbers on every platform.
#include <cstdint>
#include <string>

namespace zk0 {

// SplitMix64 finaliser of a + golden-ratio * (b + 1): a different stream for each (a, b).
uint64_t mix_seed(uint64_t a, uint64_t b);

uint64_t hash_string(const std::string& s);  // FNV-1a, stable across platforms

}  // namespace zk0
