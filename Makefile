# zk0's entry points. Each target installs what it needs first (scripts/setup.sh) and reuses
# ~/.cache (ccache) across runs.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all setup setup-test configure build test demo bench clean

all: build

setup:
	@scripts/setup.sh

# What only `make test` needs: the parity tests' reference implementation (Python LeRobot), and
# kube-apiserver, kube-controller-manager, etcd, kubectl and helm built from their Go modules.
setup-test: setup
	@scripts/setup-test.sh
	@tests/kube/build-tools.sh > /dev/null

configure: setup
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) > /dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Every test, through ctest. Tests start real processes and bind loopback ports.
test: build setup-test
	@cd $(BUILD) && ctest --output-on-failure --timeout 900

# A federated run end to end on this machine: examples/quickstart.yaml, 4 clients, 10 rounds,
# on LeRobot datasets that examples/quickstart-datasets.sh writes once.
# Builds only the three programs a run needs, not the tests and benchmarks.
demo: configure
	@cmake --build $(BUILD) -j $(JOBS) --target zk0 zk0-aggregator zk0-worker
	@examples/quickstart-datasets.sh $(BUILD)/bin/zk0
	@$(BUILD)/bin/zk0 run examples/quickstart.yaml --fresh

bench: build
	@$(BUILD)/bin/zk0-bench

clean:
	rm -rf $(BUILD)
