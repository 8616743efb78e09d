#!/usr/bin/env bash
# Installs what building and testing zk0 needs on Debian 12. Idempotent: packages already
# present are skipped, so a warm machine pays only for the dpkg query.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libyaml-cpp-dev nlohmann-json3-dev libssl-dev libcairo2-dev
  libgtest-dev libgmock-dev
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg
  python3-venv python3-pip
  prometheus-cpp-dev prometheus libcpprest-dev
  openssl curl ca-certificates
)

"$(dirname "$0")/install-packages.sh" setup "${packages[@]}"

# The project venv: pyarrow brings Arrow/Parquet C++ (Debian 12 has none). pip reuses ~/.cache/pip.
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$root/.venv/bin/python" ]; then
  python3 -m venv "$root/.venv"
fi
if ! cmp -s "$root/scripts/requirements.txt" "$root/.venv/.requirements.installed"; then
  "$root/.venv/bin/pip" install -q --disable-pip-version-check -r "$root/scripts/requirements.txt"
  cp "$root/scripts/requirements.txt" "$root/.venv/.requirements.installed"
fi

# Rust >= 1.85 for core/tokenizer (Hugging Face tokenizers); Debian 12's rustc is 1.63. rustup's
# minimal profile into ~/.cargo when no recent enough cargo is on PATH; cargo caches crates there.
need_rust() {
  local cargo
  cargo="$(command -v cargo || echo "$HOME/.cargo/bin/cargo")"
  [ -x "$cargo" ] || return 0
  local version
  version="$("$cargo" --version | awk '{print $2}')"
  [ "$(printf '%s\n1.85.0\n' "$version" | sort -V | head -1)" != "1.85.0" ]
}
if need_rust; then
  echo "setup: installing Rust (rustup, minimal profile) into ~/.cargo"
  # A pinned rustup-init, checked before it runs (the Dockerfiles pin the same).
  curl -fsSL -o /tmp/rustup-init https://static.rust-lang.org/rustup/archive/1.26.0/x86_64-unknown-linux-gnu/rustup-init
  echo "0b2f6c8f85a3d02fde2efc0ced4657869d73fccfce59defb4e8d29233116e6db  /tmp/rustup-init" | sha256sum -c - > /dev/null
  chmod +x /tmp/rustup-init
  /tmp/rustup-init -y -q --no-modify-path --profile minimal --default-toolchain stable
  rm -f /tmp/rustup-init
fi
