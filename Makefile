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

.PHONY: setup setup-rust build run test test-native test-host test-e2e fmt clippy clean

setup: setup-rust $(VENV_STAMP)

setup-rust:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

$(VENV_STAMP): envoy/requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r envoy/requirements.txt
	touch $@

build: setup-rust
	cargo build --release --target $(WASM_TARGET) -p quota-filter

run: setup build
	$(PYTHON) envoy/run_demo.py

test: test-native test-host test-e2e

test-native:
	cargo test -p quota-core -p quota-filter

test-host: build
	cargo test -p host-tests --profile host-test

# No pytest cache: it would land in envoy/tests/ (pytest's rootdir there).
test-e2e: setup build
	$(PYTHON) -m pytest envoy/tests -q -p no:cacheprovider

fmt:
	cargo fmt --all

clippy: setup-rust
	cargo clippy -p quota-core -p quota-filter --tests -- -D warnings
	cargo clippy -p quota-filter --target $(WASM_TARGET) -- -D warnings

clean:
	cargo clean
	rm -rf .run
