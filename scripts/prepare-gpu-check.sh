#!/usr/bin/env bash
# Fills .device/ (git-ignored) with what scripts/gpu-check.sh needs on a GPU machine that has
# PyTorch, a C++ compiler, CMake and ninja but no other packages and no network:
#   .device/deps.tar.xz  headers and static libraries: nlohmann/json, yaml-cpp, OpenSSL's
#                        libcrypto and GoogleTest (Debian's), and the tokenizers crate as this
#                        machine built it (there is no Rust there), debug sections stripped
#   .device/wheels/      LeRobot 0.4.4 and the versions its SmolVLA needs where the machine's own
#                        are others (transformers 4.57, huggingface_hub 0.35, tokenizers 0.22),
#                        for Python 3.12; PyAV stays behind (40 MB, nothing decodes video there)
# All of it stays under the 64 MiB a device call carries, with the repository. Then, with the
# device tool: run(command="bash scripts/gpu-check.sh", carry=[".device"]).
#   scripts/prepare-gpu-check.sh [MAIN_BUILD_DIR]   (default build/, which must have built zk0)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
main_build="$(cd "${1:-$root/build}" && pwd)"
tokenizers="$main_build/core/tokenizer/cargo/release/libzk0_tokenizers.a"
[ -f "$tokenizers" ] || { echo "FAIL: $tokenizers is missing: build zk0 first (make build)" >&2; exit 1; }
out="$root/.device"
rm -rf "$out"
mkdir -p "$out/wheels"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/include" "$stage/lib"
multiarch="/usr/include/$(gcc -dumpmachine)"
cp -r /usr/include/nlohmann /usr/include/yaml-cpp /usr/include/gtest /usr/include/openssl "$stage/include/"
cp "$multiarch"/openssl/*.h "$stage/include/openssl/"  # opensslconf.h, configuration.h
for lib in libyaml-cpp.a libcrypto.a libgtest.a libgtest_main.a; do
  cp "/usr/lib/$(gcc -dumpmachine)/$lib" "$stage/lib/"
done
strip --strip-debug -o "$stage/lib/libzk0_tokenizers.a" "$tokenizers"
tar -C "$stage" -cJf "$out/deps.tar.xz" include lib

# The versions .venv-lerobot resolves (tests/parity/requirements.txt pins LeRobot and transformers),
# as wheels for the machine's Python 3.12.
"$root/.venv/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$out/wheels" \
  lerobot==0.4.4 transformers==4.57.6 huggingface_hub==0.35.3 tokenizers==0.22.2 datasets==4.8.5 \
  diffusers==0.35.2 draccus==0.10.0 mergedeep==1.3.4 pyyaml-include==1.4.1 toml==0.10.2 deepdiff==8.6.2 \
  orderly-set==5.5.0 dill==0.4.1 multiprocess==0.70.19 pyserial==3.5
size=$(du -sb "$out" | cut -f1)
echo "prepared $out: $((size / 1048576)) MiB ($(ls "$out/wheels" | wc -l) wheels, deps.tar.xz $(($(stat -c %s "$out/deps.tar.xz") / 1048576)) MiB)"
[ "$size" -lt $((56 * 1048576)) ] || { echo "FAIL: over 56 MiB: the repository and it must fit in 64" >&2; exit 1; }
