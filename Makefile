# zk0's entry points. Each target installs what it needs first (scripts/setup.sh) and reuses
# ~/.cache (ccache) across runs.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all setup setup-cluster setup-test configure build test demo kube-demo kube-down bench clean

all: build

setup:
	@scripts/setup.sh

# A single-node Kubernetes cluster on this machine: containerd, runc, the CNI plugins, podman and
# mmdebstrap (Debian packages), and the Kubernetes binaries, CoreDNS and helm built from their Go
# modules (tests/kube/build-tools.sh, cached in ~/.cache/zk0/kube-tools).
setup-cluster: setup
	@scripts/setup-cluster.sh
	@tests/kube/build-tools.sh > /dev/null

# What only `make test` needs beyond that: the parity tests' reference implementation (Python
# LeRobot) and clang for the fuzzers.
setup-test: setup-cluster
	@scripts/setup-test.sh

configure: setup
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) > /dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Every test, through ctest. Tests start real processes and bind loopback ports. Before ctest,
# scripts/prepare-test.sh builds zk0 beside the tests' downloads (setup-test's, the Go modules,
# the images that need no build), then the Go tools. scripts/run-tests.sh runs the tests that
# may share the machine two at a time beside the cluster test, then the others alone.
test: configure
	@scripts/prepare-test.sh $(BUILD) $(JOBS)
	@scripts/run-tests.sh $(BUILD)

# A federated run end to end on this machine: examples/quickstart.yaml, 4 clients, 10 rounds,
# on LeRobot datasets that examples/quickstart-datasets.sh writes once.
# Builds only the three programs a run needs, not the tests and benchmarks.
demo: configure
	@cmake --build $(BUILD) -j $(JOBS) --target zk0 zk0-aggregator zk0-worker
	@examples/quickstart-datasets.sh $(BUILD)/bin/zk0
	@$(BUILD)/bin/zk0 run examples/quickstart.yaml --fresh

# zk0 on Kubernetes on this machine (as root): the cluster above with zk0's images built here, the
# chart installed with helm, examples/k8s/kube-demo.yaml followed to Succeeded. The cluster stays
# up for kubectl until `make kube-down`.
kube-demo: configure setup-cluster
	@cmake --build $(BUILD) -j $(JOBS) --target zk0
	@scripts/kube-demo.sh

kube-down:
	@tests/kube/cluster.sh down outputs/kube-demo/cluster

bench: build
	@$(BUILD)/bin/zk0-bench

clean:
	rm -rf $(BUILD)
