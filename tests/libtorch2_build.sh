#!/usr/bin/env bash
# zk0's LibTorch part built, linked and run against LibTorch 2.x: PyPI's torch in .venv-lerobot
# (CPU here; the same build on a GPU machine is scripts/gpu-check.sh). This machine's own build
# uses Debian's LibTorch 1.13, the CUDA images 2.x: here the 2.x paths (fused attention, the 2.4
# autocast API, the flat optimizer on 2.x tensors) compile, link and pass the SmolVLA and
# training tests, and the SmolVLA benchmark runs.
#   tests/libtorch2_build.sh MAIN_BUILD_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
main_build="$(cd "${1:?usage: libtorch2_build.sh MAIN_BUILD_DIR}" && pwd)"
build="$root/build-libtorch2"
torch_dir="$("$root/.venv-lerobot/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
version="$("$root/.venv-lerobot/bin/python" -c 'import torch; print(torch.__version__)')"
case "$version" in 2.*) ;; *) echo "FAIL: $torch_dir holds torch $version, not 2.x" >&2; exit 1 ;; esac
echo "building against torch $version from $torch_dir"
# The tokenizers crate is the main build's: cargo need not build it twice.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZK0_LIBTORCH="$torch_dir" \
  -DZK0_TOKENIZERS_TARGET_DIR="$main_build/core/tokenizer/cargo" > "$build.configure.log" 2>&1 \
  || { tail -30 "$build.configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target zk0 zk0-smolvla-bench smolvla_test training_test > "$build.build.log" 2>&1 \
  || { grep -E "error|FAILED" "$build.build.log" | head -40; exit 1; }
"$build/bin/smolvla_test"
"$build/bin/training_test"
"$build/bin/zk0-smolvla-bench" --smoke
echo "LibTorch $version: built, linked, SmolVLA and training tests pass"
