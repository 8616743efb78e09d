#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU, PyTorch (2.x, CUDA), a C++ compiler, CMake and
# ninja, and nothing else: no packages, no network. It builds zk0's LibTorch part (the policies,
# `zk0 policy`, the SmolVLA parity test and benchmark) against that machine's own PyTorch, with
# the dependencies scripts/prepare-gpu-check.sh put in .device/; runs the SmolVLA parity tests
# with zk0 on CUDA against LeRobot's float32 reference; and runs the SmolVLA benchmark at full
# size against LeRobot's Python SmolVLA on the same GPU: samples/s with and without the prefix
# cache, MFU, peak memory. About 6 minutes on an H200; it stops itself at 8.
#   bash scripts/gpu-check.sh                 (the device tool: carry .device)
# The same script proves itself on a CPU machine (how the repository checks it):
#   PYTHON=/path/to/python DEVICE=cpu BENCH_ARGS=--smoke TIME_SCALE=6 [CARRIED=.device] bash scripts/gpu-check.sh
# (TIME_SCALE stretches every time limit: 2 CPUs build and run in several times an H200 host's.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
device="${DEVICE:-cuda}"
bench_args="${BENCH_ARGS:---size full --device cuda --batch 64 --steps 7}"
carried="${CARRIED:-$root/.device}"  # what prepare-gpu-check.sh wrote
work="${WORK:-/tmp/zk0-gpu-check}"
out="${OUT:-$work/out}"
scale="${TIME_SCALE:-1}"
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }
[ -f "$carried/deps.tar.xz" ] || { echo "FAIL: no .device/deps.tar.xz: run scripts/prepare-gpu-check.sh here first, and carry .device" >&2; exit 1; }
rm -rf "$work/deps" "$work/site"
mkdir -p "$work/deps" "$work/site" "$out"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "gpu-check: $(uname -m), $(nproc) CPUs, $("$python" --version 2>&1), $(c++ --version | head -1), cmake $(cmake --version | head -1 | cut -d' ' -f3)"

"$python" -m tarfile -e "$carried/deps.tar.xz" "$work/deps"
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" "$carried"/wheels/*.whl
export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
torch_dir="$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
echo "gpu-check: torch $("$python" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'), lerobot $("$python" -c 'import importlib.metadata as m; print(m.version("lerobot"))') [$(elapsed)]"

build="$work/build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DZK0_DEVICE_BUILD=ON -DZK0_LIBTORCH="$torch_dir" \
  -DZK0_DEVICE_DEPS="$work/deps" -DZK0_PARITY_PYTHON="$(command -v "$python")" > "$out/configure.log" 2>&1 \
  || { tail -40 "$out/configure.log"; exit 1; }
timeout $((240 * scale)) cmake --build "$build" -j "$(nproc)" --target zk0 smolvla_parity_test zk0-smolvla-bench > "$out/build.log" 2>&1 \
  || { echo "FAIL: the build (log: $out/build.log)" >&2; grep -E "error|FAILED|undefined" "$out/build.log" | head -40 || true; tail -5 "$out/build.log"; exit 1; }
echo "gpu-check: built [$(elapsed)]"

# zk0 on the device, LeRobot's reference on the CPU in float32: every tensor within 1e-4.
parity=0
ZK0_PARITY_DEVICE="$device" timeout $((200 * scale)) "$build/bin/smolvla_parity_test" > "$out/parity.log" 2>&1 || parity=$?
grep -E "^\[ +(OK|FAILED|PASSED) \]|differs by" "$out/parity.log" || true
[ "$parity" -eq 0 ] || { echo "FAIL: the SmolVLA parity tests on $device (exit $parity)" >&2; tail -30 "$out/parity.log" >&2; exit 1; }
echo "gpu-check: parity on $device passed [$(elapsed)]"

remaining=$(( 480 * scale - ($(date +%s) - start) ))
[ "$remaining" -gt 30 ] || { echo "FAIL: no time left for the benchmark" >&2; exit 1; }
# shellcheck disable=SC2086  # the arguments are words
timeout "$remaining" "$build/bin/zk0-smolvla-bench" $bench_args 2>&1 | tee "$out/bench.log"
echo "gpu-check: done [$(elapsed)]"
