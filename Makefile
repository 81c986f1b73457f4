# Build, run and test the quota filter. `make test` is what CI runs.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
# `test` lists its steps in order; keep them in order under `make -j` too
# (cargo uses every core by itself).
.NOTPARALLEL:

WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/quota_filter.wasm
VENV := .venv
PYTHON := $(VENV)/bin/python
# Touched once the venv has everything in envoy/requirements.txt.
VENV_STAMP := $(VENV)/.setup-stamp

# The client library (client/): Rust to wasm32-unknown-unknown, then
# wasm-bindgen into client/pkg/, the files client/package.json exports.
CLIENT_TARGET := wasm32-unknown-unknown
CLIENT_WASM := target/$(CLIENT_TARGET)/release/quota_client.wasm
CLIENT_PKG := client/pkg
# wasm-bindgen-cli must be the exact version of the crate: read the pin.
WASM_BINDGEN_VERSION := $(shell sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' client/Cargo.toml)
# Touched once client/node_modules matches client/package-lock.json.
NODE_STAMP := client/node_modules/.setup-stamp
CHROMIUM := /usr/bin/chromium

.PHONY: setup setup-rust setup-redis setup-prometheus run-cluster build run test check test-native test-host test-e2e fmt clippy clean
.PHONY: setup-client client setup-node setup-browser test-client

setup: setup-rust $(VENV_STAMP) setup-redis setup-prometheus

# Redis and webdis (its HTTP front) from Debian, for the Redis counter store:
# its script test (test-native), the end-to-end tests and `make run-cluster`;
# redis-cli (redis-tools) and openssl make the TLS Redis Cluster (envoy/redis_cluster.py).
setup-redis:
	@command -v redis-server >/dev/null && command -v webdis >/dev/null && \
		command -v redis-cli >/dev/null && command -v openssl >/dev/null || \
		{ apt-get update && apt-get install -y redis-server redis-tools webdis openssl; }

# Prometheus and promtool from Debian, for the monitoring rules and dashboard
# in monitoring/: envoy/tests/test_prometheus.py runs `promtool check rules`,
# `promtool test rules` and a Prometheus scraping Envoy (part of test-e2e).
setup-prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		{ apt-get update && apt-get install -y --no-install-recommends prometheus; }

setup-rust:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

$(VENV_STAMP): envoy/requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r envoy/requirements.txt
	touch $@

build: setup-rust
	cargo build --release --target $(WASM_TARGET) -p quota-filter

setup-client:
	@rustup target list --installed | grep -qx '$(CLIENT_TARGET)' || rustup target add $(CLIENT_TARGET)
	@# Not --locked: its lockfile names a webpki-roots release the registry here lacks.
	@test "$$(wasm-bindgen --version 2>/dev/null)" = "wasm-bindgen $(WASM_BINDGEN_VERSION)" || \
		cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

# Strip only debug info: wasm-bindgen reads the target_features section that
# the workspace's `strip = true` would drop; it drops the names itself.
client: setup-client
	cargo build --release --target $(CLIENT_TARGET) -p quota-client --config 'profile.release.strip="debuginfo"'
	wasm-bindgen --target web --remove-name-section --remove-producers-section \
		--out-dir $(CLIENT_PKG) $(CLIENT_WASM)

# playwright-core (drives Chromium) and typescript (checks the package's types).
$(NODE_STAMP): client/package.json client/package-lock.json
	npm ci --prefix client --no-audit --no-fund
	touch $@

setup-node: $(NODE_STAMP)

# Debian's Chromium for the browser test (CI runs as root on Debian).
setup-browser:
	@test -x $(CHROMIUM) || { apt-get update && apt-get install -y chromium; }

run: setup build client
	$(PYTHON) envoy/run_demo.py

# The demo with counters in a Redis Cluster (3 masters, a replica each, TLS,
# passwords) and three Envoys, each through its webdis and redis_proxy.
# `make run-cluster MODE=approximate` picks counters.redis.mode.
MODE ?= exact
run-cluster: setup build client
	$(PYTHON) envoy/run_demo.py --cluster --mode $(MODE)

test: check test-native test-host test-client test-e2e

# Fails on a formatting difference or any clippy warning, native (every crate,
# tests, benches and examples included) and on both wasm targets. The schema
# and the tool's golden files are checked by test-native (matrix/tests).
check: setup-rust setup-client
	cargo fmt --all -- --check
	cargo fmt --manifest-path fuzz/Cargo.toml -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p quota-filter --target $(WASM_TARGET) --all-targets -- -D warnings
	cargo clippy -p quota-client --target $(CLIENT_TARGET) --all-targets -- -D warnings
	cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings

# The fuzz crate's own tests too (no cargo-fuzz needed, about 20 s from cold):
# the exchange target's event-sequence driver over a few thousand inputs.
test-native: setup-redis
	cargo test -p quota-core -p quota-filter -p quota-matrix
	cargo test --manifest-path fuzz/Cargo.toml

# The quota matrix tool: make matrix ARGS="render envoy/demo-config.json"
.PHONY: matrix
matrix:
	cargo run -q -p quota-matrix -- $(ARGS)

# The client's Rust logic natively, then its JS build in Node against
# responses recorded from Envoy (client/tests/), and its TypeScript types.
test-client: client setup-node
	cargo test -p quota-client
	npm --prefix client test

# The host's own self-tests run a small fixture filter (host-tests/fixtures/echo-filter).
test-host: build
	CARGO_TARGET_DIR=target/fixtures cargo build --release --target $(WASM_TARGET) \
		--manifest-path host-tests/fixtures/echo-filter/Cargo.toml
	@# The floor filter of `make bench`: host_calls checks it makes the filter's calls.
	cargo build --locked --release --target $(WASM_TARGET) \
		--manifest-path bench/floor-filter/Cargo.toml --target-dir target/bench-floor
	cargo test -p host-tests --profile host-test

# No pytest cache: it would land in envoy/tests/ (pytest's rootdir there).
# `dist` first: envoy/tests/test_dist.py loads and pushes the release.
test-e2e: setup build client setup-node setup-browser dist
	$(PYTHON) -m pytest envoy/tests -q -p no:cacheprovider

# The release, for users who build nothing, in target/dist/ (dist/build.py
# lists it): the filter's .wasm after wasm-opt and its sha256, the filter as
# an OCI image (Istio, Envoy Gateway), the quota-matrix binary, the client's
# npm tarball, LICENSE and SHA256SUMS. Debian's binaryen (wasm-opt), skopeo
# (checks the image) and docker-registry (test_dist.py pushes the image to one).
.PHONY: dist setup-dist
setup-dist:
	@command -v wasm-opt >/dev/null && command -v skopeo >/dev/null && command -v docker-registry >/dev/null || \
		{ apt-get update && apt-get install -y binaryen skopeo docker-registry; }

dist: setup-dist build client
	cargo build --release -p quota-matrix
	python3 dist/build.py

fmt:
	cargo fmt --all

# Kept for habit: the lints are part of `make check`.
clippy: check

clean:
	cargo clean
	rm -rf .run $(CLIENT_PKG)

# Benchmarks, not part of `make test` (about 15 minutes): criterion benchmarks
# of the core, then the load benchmark through real Envoy with wrk against
# baselines in the same run, the memory per counter and the .wasm size
# (bench/load.py). Results go to target/bench/; BENCHMARKS.md reports a run.
.PHONY: bench
NOOP_FILTER_DIR := target/bench-noop
# More arguments for bench/load.py, e.g. a public peer built outside the tree:
# make bench BENCH_ARGS="--peer-wasm /path/peer.wasm --peer-config /path/peer.json"
BENCH_ARGS ?=
FLOOR_FILTER_DIR := target/bench-floor
bench: setup build
	@command -v wrk >/dev/null && command -v wasm-opt >/dev/null || \
		{ apt-get update && apt-get install -y wrk binaryen; }
	cargo build --locked --release --target $(WASM_TARGET) \
		--manifest-path bench/noop-filter/Cargo.toml --target-dir $(NOOP_FILTER_DIR)
	cargo build --locked --release --target $(WASM_TARGET) \
		--manifest-path bench/floor-filter/Cargo.toml --target-dir $(FLOOR_FILTER_DIR)
	cargo bench -p quota-core --bench core
	mkdir -p target/bench
	$(PYTHON) bench/criterion_table.py target/criterion | tee target/bench/core.md
	@# Wasm instructions per request (wasmtime's fuel: exact, machine-independent)
	@# of the quota filter, the floor and the do-nothing filter.
	set -o pipefail; for wasm in $(CURDIR)/$(WASM) $(CURDIR)/$(FLOOR_FILTER_DIR)/$(WASM_TARGET)/release/floor_filter.wasm \
		$(CURDIR)/$(NOOP_FILTER_DIR)/$(WASM_TARGET)/release/noop_filter.wasm; do \
		echo "# $$wasm"; HOST_TESTS_FUEL=1 QUOTA_FILTER_WASM=$$wasm \
		cargo bench -q -p host-tests --profile host-test --bench filter -- bench_tier | grep instructions; \
	done | tee target/bench/instructions.txt
	$(PYTHON) bench/load.py $(BENCH_ARGS)

# The soak, not part of `make test` or `make bench` (about 12 minutes): 10
# rounds of 10^5 new callers through real Envoy with a 30 s window, Envoy's RSS
# after each round (bench/soak.py). `make soak SOAK_ARGS="--compare-wasm
# old.wasm"` soaks another build beside it. BENCHMARKS.md reports a run.
SOAK_ARGS ?=
.PHONY: soak
soak: setup build
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
	$(PYTHON) bench/soak.py $(SOAK_ARGS)

# Fuzzing, not part of `make test`: replays fuzz/regressions/, then runs each
# cargo-fuzz target in fuzz/ for FUZZ_SECONDS and prints the executions it
# reached (fuzz/run.sh). `make fuzz FUZZ_SECONDS=600` for a longer run.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh
