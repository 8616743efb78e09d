#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan, UBSan; tests/fuzz/CMakeLists.txt) and runs each over
# its seed corpus for SECONDS (default 20): a regression that crashes on the corpus, or on what
# the fuzzer reaches from it in that time, fails. The corpus in the repo is not modified; what the
# run finds goes to a scratch folder, crashes to tests/fuzz/crashes/ (kept for a reproducer).
#   tests/fuzz/run.sh [SECONDS [TARGET...]]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
seconds="${1:-20}"
shift || true
build="$root/build-fuzz"
CC=clang-14 CXX=clang++-14 cmake -S "$root/tests/fuzz" -B "$build" -G Ninja > "$build.configure.log" 2>&1 \
  || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" > "$build.build.log" 2>&1 || { tail -50 "$build.build.log"; exit 1; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spec safetensors upload_stream update_codec lerobot_metadata lerobot_parquet cache_entry)
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$root/tests/fuzz/crashes"
# One fuzzer per core at a time (each is single-threaded); the results are read back in order.
export build root scratch seconds
printf '%s\n' "${targets[@]}" | xargs -P "$(nproc)" -I{} bash -c '
  t={}; mkdir -p "$scratch/$t"
  "$build/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$root/tests/fuzz/crashes/$t-" "$scratch/$t" "$root/tests/fuzz/corpus/$t" \
    > "$scratch/$t.log" 2>&1
  echo $? > "$scratch/$t.rc"'
failed=0
for t in "${targets[@]}"; do
  if [ "$(cat "$scratch/$t.rc" 2> /dev/null)" = 0 ]; then
    echo "fuzz_$t: $(grep -o 'number_of_executed_units: [0-9]*' "$scratch/$t.log" | cut -d' ' -f2) runs, no crash"
  else
    echo "FAIL: fuzz_$t crashed" >&2
    grep -A30 -E "ERROR|deadly|runtime error" "$scratch/$t.log" | head -60 >&2
    failed=1
  fi
done
exit "$failed"
