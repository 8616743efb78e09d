# syntax=docker/dockerfile:1
# zk0-aggregator on CUDA: the run's aggregator (rounds, FedAvg/FedProx, held-out evaluation, checkpoints).
#
#   docker build -f docker/aggregator.Dockerfile -t zk0/aggregator:0.1.0 .
#
# Base: NVIDIA's CUDA + cuDNN images on Ubuntu 24.04, whose archive has every C++ dependency zk0
# builds with on Debian 12, in the same versions where it matters: gRPC 1.51 (with its CMake
# package), protobuf 3.21, prometheus-cpp 1.0, yaml-cpp, FFmpeg, cairo, OpenSSL 3, cpprestsdk.
# Ubuntu 22.04 has no prometheus-cpp, and its gRPC 1.30 ships no CMake package. Arrow/Parquet
# come from Apache's own apt repository (built against the same protobuf), LibTorch from
# LIBTORCH_URL. The build stage is the same text in aggregator.Dockerfile and worker.Dockerfile,
# so building both images reuses one cached build.

FROM nvidia/cuda:12.6.3-cudnn-devel-ubuntu24.04 AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
# Every download is checked against a SHA-256 pinned here or given by the builder: a build never
# runs or installs bytes nobody pinned. Apache publishes the apt-source package per release and
# PyTorch its LibTorch archives without a checksum file, so those two come with the build:
#   docker build --build-arg ARROW_APT_SOURCE_SHA256=... --build-arg LIBTORCH_SHA256=... ...
ARG ARROW_APT_SOURCE_URL=https://apache.jfrog.io/artifactory/arrow/ubuntu/pool/noble/main/a/apache-arrow-apt-source/apache-arrow-apt-source_18.1.0-1_all.deb
ARG ARROW_APT_SOURCE_SHA256=
# Unpinned apt versions (DL3008): the images take Ubuntu's security updates; Arrow's packages
# come from Apache's repository as one consistent release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl unzip \
 && mkdir -p /opt/apt \
 && curl -fsSL -o /opt/apt/apache-arrow-apt-source.deb "${ARROW_APT_SOURCE_URL}" \
 && { [ -n "${ARROW_APT_SOURCE_SHA256}" ] || { echo "--build-arg ARROW_APT_SOURCE_SHA256 is required" >&2; exit 1; }; } \
 && echo "${ARROW_APT_SOURCE_SHA256}  /opt/apt/apache-arrow-apt-source.deb" | sha256sum -c - \
 && apt-get install -y --no-install-recommends /opt/apt/apache-arrow-apt-source.deb \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libyaml-cpp-dev nlohmann-json3-dev libssl-dev libcairo2-dev prometheus-cpp-dev libcpprest-dev \
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev \
      libarrow-dev libparquet-dev \
 && rm -rf /var/lib/apt/lists/*

# LibTorch with CUDA (the cxx11 ABI build, which matches the system's C++ libraries). Its include
# tree carries the headers of the protobuf it bundles (symbols hidden, pytorch/pytorch#14277);
# they would shadow the system protobuf our generated code needs, and LibTorch's API does not use
# them (zk0's sources compile against LibTorch 2.10's headers without them).
ARG LIBTORCH_URL=https://download.pytorch.org/libtorch/cu124/libtorch-cxx11-abi-shared-with-deps-2.5.1%2Bcu124.zip
ARG LIBTORCH_SHA256=
RUN curl -fsSL -o /tmp/libtorch.zip "${LIBTORCH_URL}" \
 && { [ -n "${LIBTORCH_SHA256}" ] || { echo "--build-arg LIBTORCH_SHA256 is required" >&2; exit 1; }; } \
 && echo "${LIBTORCH_SHA256}  /tmp/libtorch.zip" | sha256sum -c - \
 && unzip -q /tmp/libtorch.zip -d /opt \
 && rm -rf /tmp/libtorch.zip /opt/libtorch/include/google

# Rust for core/tokenizer (Hugging Face tokenizers as a static library): Ubuntu's rustc is older
# than the crate needs. rustup-init is a pinned release checked by its SHA-256 (no `curl | sh`);
# it installs a pinned toolchain, and Cargo fetches the crates Cargo.lock pins by checksum.
ARG RUST_VERSION=1.85.0
ARG RUSTUP_INIT_URL=https://static.rust-lang.org/rustup/archive/1.26.0/x86_64-unknown-linux-gnu/rustup-init
ARG RUSTUP_INIT_SHA256=0b2f6c8f85a3d02fde2efc0ced4657869d73fccfce59defb4e8d29233116e6db
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:${PATH}
RUN curl -fsSL -o /tmp/rustup-init "${RUSTUP_INIT_URL}" \
 && echo "${RUSTUP_INIT_SHA256}  /tmp/rustup-init" | sha256sum -c - \
 && chmod +x /tmp/rustup-init \
 && /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain "${RUST_VERSION}" \
 && rm /tmp/rustup-init

WORKDIR /src
COPY . .
# No GPU in the build: name the architectures instead of letting LibTorch's CMake probe for one.
ENV TORCH_CUDA_ARCH_LIST="7.5;8.0;8.6;8.9;9.0"
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
      -DZK0_ARROW_FROM=system -DCMAKE_PREFIX_PATH=/opt/libtorch \
 && cmake --build build --target zk0-aggregator zk0-worker
# The Ubuntu packages that own the shared libraries the two binaries load (LibTorch's own and
# CUDA's are copied or come with the base image): the runtime stage installs exactly these.
RUN ldd build/bin/zk0-aggregator build/bin/zk0-worker \
    | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u \
    | while read -r lib; do dpkg -S "$lib" 2>/dev/null || dpkg -S "$(realpath "$lib")" 2>/dev/null || true; done \
    | cut -d: -f1 | sort -u > /opt/apt/runtime-packages.txt \
 && cat /opt/apt/runtime-packages.txt

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
COPY --from=build /opt/apt/ /opt/apt/
# Unpinned apt versions (DL3008): the list is the build stage's, so versions match that build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends /opt/apt/apache-arrow-apt-source.deb \
 && apt-get update \
 && xargs -a /opt/apt/runtime-packages.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /opt/apt
COPY --from=build /opt/libtorch/lib /opt/libtorch/lib
COPY --from=build /src/build/bin/zk0-aggregator /usr/local/bin/zk0-aggregator
# Fails the build when a library is missing (libcuda comes from the node's driver at run time).
RUN if ldd /usr/local/bin/zk0-aggregator | grep 'not found' | grep -v 'libcuda\.so'; then exit 1; fi \
 && mkdir -p /var/lib/zk0 && chown 65532:65532 /var/lib/zk0
WORKDIR /var/lib/zk0
USER 65532:65532
# Prometheus metrics on /metrics (9464 unless --metrics-listen says otherwise).
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/zk0-aggregator"]
