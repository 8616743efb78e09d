#!/usr/bin/env bash
# What the tests need beyond the build: Python LeRobot (and with it torch) in .venv-lerobot, the
# reference the parity tests compare against. Large (about 8 GB with torch's CUDA wheels, which
# PyPI's torch always brings); pip reuses ~/.cache/pip, and a venv already at the pinned
# requirements is left alone.
#   scripts/setup-test.sh [packages|lerobot]   one part only (scripts/prepare-test.sh runs the
#                                              download-bound LeRobot part beside the C++ build)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
part="${1:-all}"
case "$part" in
  all|packages|lerobot) ;;
  *) echo "setup-test.sh: unknown part $part (packages or lerobot)" >&2; exit 2 ;;
esac

# clang with libFuzzer and the sanitizers' runtimes, for tests/fuzz. (The cluster tests' packages
# come from scripts/setup-cluster.sh, which `make setup-test` runs first.)
if [ "$part" != lerobot ]; then
  "$root/scripts/install-packages.sh" setup-test clang-14 libclang-rt-14-dev
fi
[ "$part" != packages ] || exit 0
venv="$root/.venv-lerobot"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! cmp -s "$root/tests/parity/requirements.txt" "$venv/.requirements.installed"; then
  echo "setup-test: installing $(grep -v '^#' "$root/tests/parity/requirements.txt" | xargs) into .venv-lerobot"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/parity/requirements.txt"
  cp "$root/tests/parity/requirements.txt" "$venv/.requirements.installed"
fi
if ! cmp -s "$root/tests/parity/requirements-v21.txt" "$venv/lerobot-0.3.3/.requirements.installed"; then
  rm -rf "$venv/lerobot-0.3.3"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --target "$venv/lerobot-0.3.3" \
    -r "$root/tests/parity/requirements-v21.txt"
  cp "$root/tests/parity/requirements-v21.txt" "$venv/lerobot-0.3.3/.requirements.installed"
fi
