#!/usr/bin/env bash
# Runs every test through ctest in two passes, for a machine with few cores:
#   1. the tests labelled `concurrent` two at a time: cluster_test first (the longest), the unit,
#      parity, operator and build tests beside it. Where the cores are busy anyway (a cold
#      machine's image and LibTorch builds) this only reorders work; it saves the waits;
#   2. every other test alone: real federations, slow links, deadlines and what measures time.
# Both passes run even when the first fails; the exit status is non-zero if either did.
#   scripts/run-tests.sh BUILD_DIR [ctest arguments...]
set -uo pipefail
build="${1:?usage: run-tests.sh BUILD_DIR [ctest arguments...]}"
shift
cd "$build" || exit 1
start=$SECONDS
ctest --output-on-failure --timeout 900 -j 2 -L '^concurrent$' "$@"
concurrent=$?
concurrent_seconds=$((SECONDS - start))
ctest --output-on-failure --timeout 900 -LE '^concurrent$' "$@"
alone=$?
echo "run-tests: concurrent pass $( ((concurrent)) && echo FAILED || echo passed) in ${concurrent_seconds} s," \
     "pass alone $( ((alone)) && echo FAILED || echo passed) in $((SECONDS - start - concurrent_seconds)) s"
((concurrent == 0 && alone == 0))
