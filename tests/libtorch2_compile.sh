#!/usr/bin/env bash
# zk0's LibTorch code against LibTorch 2.x's headers. This machine builds with Debian's LibTorch
# 1.13, and the CUDA images build with LibTorch 2.5. Every source that uses LibTorch must also
# compile with TORCH_VERSION_MAJOR >= 2 (fused attention and the rest of the 2.x paths), so this
# checks them against the headers of PyPI's torch in .venv-lerobot. It is syntax only: the venv
# has no CUDA LibTorch to link, and running the GPU paths needs a GPU.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:?usage: libtorch2_compile.sh BUILD_DIR}"
torch_include="$("$root/.venv-lerobot/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"
flags=(-std=c++17 -fsyntax-only -I"$root" -I"$build" -I"$torch_include" -I"$torch_include/torch/csrc/api/include")

echo '#include <torch/version.h>
static_assert(TORCH_VERSION_MAJOR >= 2, "these headers are not LibTorch 2.x");' | g++ "${flags[@]}" -x c++ - \
  || { echo "FAIL: $torch_include is not LibTorch 2.x" >&2; exit 1; }

cd "$root"
sources=$(ls core/data/*.cpp core/policy/*.cpp core/policy/smolvla/*.cpp core/optim/*.cpp core/runtime/*.cpp \
             worker/trainer.cpp aggregator/evaluation.cpp cli/policy_command.cpp)
echo "checking $(echo "$sources" | wc -l) sources against $torch_include"
failed=0
printf '%s\n' $sources | xargs -P "$(nproc)" -I{} sh -c 'g++ "$@" {} || { echo "FAIL: {}" >&2; exit 1; }' _ "${flags[@]}" \
  || failed=1
[ "$failed" -eq 0 ] && echo "all sources compile against LibTorch 2.x"
exit "$failed"
