# syntax=docker/dockerfile:1
# zk0-aggregator and zk0-worker, CPU or CUDA: one recipe, two targets. The CPU and the CUDA
# images differ only in LibTorch (and, if you choose, the base images); everything else, the
# Debian 12 packages, Arrow, Rust and the build, is the same text.
#
#   docker build -f docker/zk0.Dockerfile --target aggregator -t zk0/aggregator:0.1.0-cpu .
#   docker build -f docker/zk0.Dockerfile --target worker     -t zk0/worker:0.1.0-cpu .
#
# CPU (the default): Debian's LibTorch 1.13, the one the local build and the tests use.
# CUDA: a LibTorch zip (2.x, with its CUDA, cuDNN and NCCL libraries inside), checked by its
# SHA-256, which PyTorch does not publish: compute it once from a copy you trust.
#
#   docker build -f docker/zk0.Dockerfile --target worker -t zk0/worker:0.1.0 \
#     --build-arg LIBTORCH_URL=https://download.pytorch.org/libtorch/cu124/libtorch-cxx11-abi-shared-with-deps-2.5.1%2Bcu124.zip \
#     --build-arg LIBTORCH_SHA256=<sha256 of that zip> .
#
# The C++ dependencies are scripts/setup.sh's, without what only the tests and the demo use.
# Debian 12 has no Arrow packages: Arrow/Parquet C++ come from the pyarrow wheel the local build
# uses (scripts/requirements.txt), as cmake/arrow.cmake takes them (ZK0_ARROW_FROM=wheel).
#
# A builder may bind-mount caches over /var/cache/apt/archives, /root/.cache/pip,
# BUILD_CARGO_HOME/registry, /var/cache/ccache and /var/cache/zk0-tokenizers, and give its CA bundle
# as the secret `ca-bundle` (HTTPS through an intercepting proxy); without them the build
# downloads and compiles everything itself (tests/kube/images.sh passes all of them). With
# SRC_DIR, the locale and the Rust version of a host build of the same tree, that build's
# compiler cache and Cargo target folder serve this one: the commands are the same, path for path.

ARG BUILD_BASE=debian:12
ARG RUNTIME_BASE=debian:12-slim

# The compilers, libraries and tools, before any of zk0's source: a stage of its own so that a
# builder can make (and cache) it while the source is still changing or being compiled elsewhere.
FROM ${BUILD_BASE} AS toolchain
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
# Empty: Debian's libtorch-dev. Otherwise a LibTorch zip, unpacked into /opt/zk0/libtorch.
ARG LIBTORCH_URL=
ARG LIBTORCH_SHA256=
# Unpinned apt versions (DL3008): Debian 12's stable archive only moves a package to a security or
# point-release fix, and a pinned version stops building the day the archive supersedes it.
# dpkg's fsync per file is skipped (--force-unsafe-io): a failed build leaves no layer behind.
# hadolint ignore=DL3008
RUN libtorch_package=libtorch-dev && if [ -n "${LIBTORCH_URL}" ]; then libtorch_package=unzip; fi \
 && apt-get update \
 && apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-unsafe-io \
      build-essential cmake ninja-build ccache pkg-config chrpath curl ca-certificates \
      libopenblas0-pthread libopenblas0-openmp "${libtorch_package}" \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libyaml-cpp-dev nlohmann-json3-dev libssl-dev libcairo2-dev \
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev \
      python3-venv prometheus-cpp-dev libcpprest-dev \
 && rm -rf /var/lib/apt/lists/*

# Every download is checked against a SHA-256 pinned here or given with the URL: a build never
# runs or installs bytes nobody pinned.
RUN --mount=type=secret,id=ca-bundle,target=/etc/ssl/certs/ca-certificates.crt \
    if [ -n "${LIBTORCH_URL}" ]; then \
      { [ -n "${LIBTORCH_SHA256}" ] || { echo "--build-arg LIBTORCH_SHA256 is required with LIBTORCH_URL" >&2; exit 1; }; } \
      && curl -fsSL -o /tmp/libtorch.zip "${LIBTORCH_URL}" \
      && echo "${LIBTORCH_SHA256}  /tmp/libtorch.zip" | sha256sum -c - \
      && mkdir -p /opt/zk0 && unzip -q /tmp/libtorch.zip -d /opt/zk0 \
      && rm /tmp/libtorch.zip; \
    fi

# Rust for core/tokenizer (Hugging Face tokenizers as a static library): Debian's rustc 1.63 is
# older than the crate needs. rustup-init is a pinned release checked by its SHA-256 (no
# `curl | sh`); it installs a pinned toolchain, and Cargo fetches the crates Cargo.lock pins by
# checksum.
ARG RUST_VERSION=1.85.0
ARG RUSTUP_INIT_URL=https://static.rust-lang.org/rustup/archive/1.26.0/x86_64-unknown-linux-gnu/rustup-init
ARG RUSTUP_INIT_SHA256=0b2f6c8f85a3d02fde2efc0ced4657869d73fccfce59defb4e8d29233116e6db
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:${PATH}
RUN --mount=type=secret,id=ca-bundle,target=/etc/ssl/certs/ca-certificates.crt \
    curl -fsSL -o /tmp/rustup-init "${RUSTUP_INIT_URL}" \
 && echo "${RUSTUP_INIT_SHA256}  /tmp/rustup-init" | sha256sum -c - \
 && chmod +x /tmp/rustup-init \
 && /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain "${RUST_VERSION}" \
 && rm /tmp/rustup-init

# Arrow/Parquet C++ from the pyarrow wheel, in a venv at SRC_DIR/.venv where cmake/arrow.cmake
# looks (the version is scripts/requirements.txt's; the hash is its cp311 manylinux x86_64 wheel).
ARG SRC_DIR=/src
ARG PYARROW_VERSION=26.0.1
ARG PYARROW_SHA256=39cb0f2418282c24bea6ceda77b03e5a8f0a5766b63a8bf194d4e2a2c423548c
# pip's cache (DL3042) is whatever the builder mounts at /root/.cache/pip; this stage is not shipped.
# hadolint ignore=DL3042
RUN --mount=type=secret,id=ca-bundle,target=/etc/ssl/certs/ca-certificates.crt \
    python3 -m venv "${SRC_DIR}/.venv" \
 && echo "pyarrow==${PYARROW_VERSION} --hash=sha256:${PYARROW_SHA256}" > /tmp/pyarrow.txt \
 && "${SRC_DIR}/.venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: \
      --require-hashes -r /tmp/pyarrow.txt \
 && rm /tmp/pyarrow.txt

FROM toolchain AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG LIBTORCH_URL=
ARG SRC_DIR=/src
WORKDIR ${SRC_DIR}
COPY . .
# ccache keys on the compiler's locale: a builder sharing a host's compiler cache passes the
# host's (an empty value means unset). Cargo's fingerprints name the crates' source paths under
# CARGO_HOME: a builder sharing a host's crate registry and tokenizer target folder mounts the
# registry at the host's path and names that home in BUILD_CARGO_HOME.
ARG BUILD_CARGO_HOME=/opt/cargo
ARG LANG=C.UTF-8
ARG LC_ALL=
ARG LC_CTYPE=
ARG LC_MESSAGES=
# RelWithDebInfo, the build type the local build uses, so that its compiler cache applies. The
# compiler cache and Cargo's target folder are used when the builder mounts them; the build
# folder goes, so that the layer keeps only what the runtime stages take:
# - /opt/zk0: the libraries the binaries load that no Debian package owns (the wheel's Arrow and
#   Parquet in lib/; a LibTorch zip's stay in libtorch/lib);
# - /opt/zk0-build: the stripped binaries, and the Debian packages that own every other library
#   they load, which the runtime stage installs.
# The binaries' RPATH names the wheel's folder in the venv: it is pointed at /opt/zk0/lib.
RUN --mount=type=secret,id=ca-bundle,target=/etc/ssl/certs/ca-certificates.crt \
    { [ -n "${LANG}" ] || unset LANG; } && { [ -n "${LC_ALL}" ] || unset LC_ALL; } \
 && { [ -n "${LC_CTYPE}" ] || unset LC_CTYPE; } && { [ -n "${LC_MESSAGES}" ] || unset LC_MESSAGES; } \
 && export CCACHE_DIR=/var/cache/ccache && { mountpoint -q "${CCACHE_DIR}" || export CCACHE_DISABLE=1; } \
 && export CARGO_HOME="${BUILD_CARGO_HOME}" \
 && libtorch="" && if [ -n "${LIBTORCH_URL}" ]; then libtorch=/opt/zk0/libtorch; fi \
 && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF \
      -DZK0_LIBTORCH="${libtorch}" -DZK0_TOKENIZERS_TARGET_DIR=/var/cache/zk0-tokenizers \
 && cmake --build build --target zk0-aggregator zk0-worker \
 && mkdir -p /opt/zk0/lib /opt/zk0-build/bin \
 && wheel_lib="$("${SRC_DIR}/.venv/bin/python" -c 'import pyarrow; print(pyarrow.get_library_dirs()[0])')" \
 && for b in zk0-aggregator zk0-worker; do \
      strip --strip-unneeded -o "/opt/zk0-build/bin/$b" "build/bin/$b" \
      && rpath="$(chrpath -l "/opt/zk0-build/bin/$b" | sed -n 's/.*R[UN]*PATH=//p')" \
      && chrpath -r "$(echo "${rpath}" | sed "s|${wheel_lib}|/opt/zk0/lib|")" "/opt/zk0-build/bin/$b"; \
    done \
 && ldd build/bin/zk0-aggregator build/bin/zk0-worker \
    | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u > /tmp/libs \
 && xargs -a /tmp/libs realpath > /tmp/real-libs \
 && { xargs -a /tmp/libs dpkg -S 2>/dev/null || true; xargs -a /tmp/real-libs dpkg -S 2>/dev/null || true; } \
    | grep -v '^diversion' > /tmp/owners \
 && sed 's/: \/.*//; s/, /\n/g' /tmp/owners | sed 's/:.*//' | sort -u > /opt/zk0-build/runtime-packages.txt \
 && sed 's/^.*: \//\//' /tmp/owners > /tmp/owned \
 && paste -d ' ' /tmp/libs /tmp/real-libs | while read -r lib real; do \
      if ! grep -qxF -e "$lib" -e "$real" /tmp/owned; then \
        case "$lib" in /opt/zk0/*) ;; *) cp -L "$lib" /opt/zk0/lib/ ;; esac; \
      fi; \
    done \
 && rm -rf build /tmp/libs /tmp/real-libs /tmp/owners /tmp/owned \
      /opt/zk0/libtorch/include /opt/zk0/libtorch/share /opt/zk0/libtorch/bin /opt/zk0/libtorch/lib/*.a \
 && { mountpoint -q /var/cache/zk0-tokenizers || rm -rf /var/cache/zk0-tokenizers; } \
 && ls /opt/zk0/lib && cat /opt/zk0-build/runtime-packages.txt

# What both images share: the runtime packages, the libraries, a writable /var/lib/zk0.
FROM ${RUNTIME_BASE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
COPY --from=build /opt/zk0-build/runtime-packages.txt /tmp/runtime-packages.txt
# Unpinned apt versions (DL3008): the list is the build stage's, from the same archive.
# hadolint ignore=DL3008
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-unsafe-io \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && mkdir -p /var/lib/zk0 && chown 65532:65532 /var/lib/zk0
COPY --from=build /opt/zk0/ /opt/zk0/
WORKDIR /var/lib/zk0
USER 65532:65532

FROM runtime AS worker
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=build /opt/zk0-build/bin/zk0-worker /usr/local/bin/zk0-worker
# Fails the build when a library is missing (libcuda comes from the node's driver at run time).
RUN if ldd /usr/local/bin/zk0-worker | grep 'not found' | grep -v 'libcuda\.so'; then exit 1; fi
# Prometheus metrics on /metrics (9465 unless --metrics-listen says otherwise).
EXPOSE 9465
ENTRYPOINT ["/usr/local/bin/zk0-worker"]

FROM runtime AS aggregator
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=build /opt/zk0-build/bin/zk0-aggregator /usr/local/bin/zk0-aggregator
RUN if ldd /usr/local/bin/zk0-aggregator | grep 'not found' | grep -v 'libcuda\.so'; then exit 1; fi
# Prometheus metrics on /metrics (9464 unless --metrics-listen says otherwise).
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/zk0-aggregator"]
