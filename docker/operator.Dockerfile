# syntax=docker/dockerfile:1
# zk0-operator: the Kubernetes operator. No LibTorch, gRPC, FFmpeg or Arrow: it is built with
# -DZK0_OPERATOR_ONLY=ON on Debian 12, the distribution the project builds and tests on.
#
#   docker build -f docker/operator.Dockerfile -t zk0/operator:0.1.0 .

FROM debian:12 AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
# Unpinned apt versions (DL3008): Debian 12's stable archive only ever moves a package to a security
# or point-release fix, and a pin would break the build the day the pinned version is superseded.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config ccache \
      libcpprest-dev libyaml-cpp-dev nlohmann-json3-dev libssl-dev prometheus-cpp-dev \
 && rm -rf /var/lib/apt/lists/*
# As docker/zk0.Dockerfile: a builder sharing a host's compiler cache mounts it at
# /var/cache/ccache and passes the host's checkout path and locale, and the build type is the
# local build's, so that what a host build compiled is a cache hit here. Without the mount the
# cache is off.
ARG SRC_DIR=/src
ARG LANG=C.UTF-8
ARG LC_ALL=
ARG LC_CTYPE=
ARG LC_MESSAGES=
# buildah's layer cache keys RUN steps on the build arguments, not WORKDIR or COPY: this RUN makes
# a checkout at another path miss the cache from here on, rather than reuse a COPY into the old one.
RUN mkdir -p "${SRC_DIR}"
WORKDIR ${SRC_DIR}
COPY . .
RUN { [ -n "${LANG}" ] || unset LANG; } && { [ -n "${LC_ALL}" ] || unset LC_ALL; } \
 && { [ -n "${LC_CTYPE}" ] || unset LC_CTYPE; } && { [ -n "${LC_MESSAGES}" ] || unset LC_MESSAGES; } \
 && export CCACHE_DIR=/var/cache/ccache && { mountpoint -q "${CCACHE_DIR}" || export CCACHE_DISABLE=1; } \
 && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZK0_OPERATOR_ONLY=ON \
 && cmake --build build --target zk0-operator \
 && mkdir -p /opt/zk0-build/bin \
 && strip --strip-unneeded -o /opt/zk0-build/bin/zk0-operator build/bin/zk0-operator \
 && rm -rf build

FROM debian:12-slim
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
# Only the shared libraries zk0-operator loads (libcpprest2.10 brings brotli and zlib).
# Unpinned for the same reason as above: the image should get Debian 12's security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates libcpprest2.10 libyaml-cpp0.7 libssl3 libprometheus-cpp-core1.0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/zk0-build/bin/zk0-operator /usr/local/bin/zk0-operator
# Fails the build when a library the binary needs is missing from this stage.
RUN if ldd /usr/local/bin/zk0-operator | grep 'not found'; then exit 1; fi
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/zk0-operator"]
