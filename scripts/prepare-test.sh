#!/usr/bin/env bash
# What `make test` does before ctest, arranged for a machine with few cores: first every Debian
# package (apt takes one lock), then zk0's C++ build, which needs the cores, side by side with what
# only the tests need and mostly waits on the network for: Python LeRobot for the parity tests
# (~8 GB of wheels), the Go modules of the Kubernetes tools (several GB) and the images or image
# stages that install from Debian and PyPI alone (the Debian base, Python, hub-download, the
# aggregator's and worker's toolchain stage). Then the Go builds.
# From a fresh clone with empty caches this saves the downloads' minutes; warm, each part is a check.
#   scripts/prepare-test.sh BUILD_DIR JOBS
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:?usage: prepare-test.sh BUILD_DIR JOBS}"
jobs="${2:?usage: prepare-test.sh BUILD_DIR JOBS}"

"$root/scripts/setup-cluster.sh"
"$root/scripts/setup-test.sh" packages

mkdir -p "$build"
downloads_log="$build/test-downloads.log"
# In its own process group, so that a failed or interrupted build stops the downloads too.
set -m
(
  "$root/scripts/setup-test.sh" lerobot &
  lerobot=$!
  "$root/tests/kube/build-tools.sh" --download-only > /dev/null \
    && "$root/tests/kube/images.sh" --only hub-download,toolchain
  others=$?
  wait "$lerobot" && exit "$others"
) > "$downloads_log" 2>&1 &
downloads=$!
set +m
trap 'kill -TERM -- "-$downloads" 2> /dev/null || true' EXIT

cmake --build "$build" -j "$jobs"

if ! wait "$downloads"; then
  tail -n 40 "$downloads_log" >&2
  echo "prepare-test: the test downloads failed (full log: $downloads_log)" >&2
  trap - EXIT
  exit 1
fi
trap - EXIT
"$root/tests/kube/build-tools.sh" > /dev/null
