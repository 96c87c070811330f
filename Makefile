# pylium: `make demo` (set-up + the main job) and `make test` (set-up + every test tier).
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin

.PHONY: setup demo test check unit integration e2e bench crds clean bpf

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

check: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -q tests/integration

e2e: setup
	$(BIN)/pytest -q tests/e2e

# The eBPF objects (bpf/build/<program>-<hash>.o), rebuilt only when a source changes.
bpf: setup
	$(PY) -m pylium.adapters.bpf.build

# Every tier but the benchmarks: static checks, then unit, datapath, integration, e2e.
test: check bpf
	$(BIN)/pytest -q -p no:cacheprovider --durations=40 tests

bench: setup
	$(PY) benchmarks/store_throughput.py
	$(PY) benchmarks/ipam_identity.py
	$(PY) benchmarks/datapath_throughput.py
	$(PY) benchmarks/cni_churn.py
	$(PY) benchmarks/policy_resolution.py
	$(PY) benchmarks/policy_enforcement.py
	$(PY) benchmarks/policy_rr.py
	$(PY) benchmarks/eni_ipam.py
	$(PY) benchmarks/hubble.py
	$(PY) benchmarks/socket_lb.py
	$(PY) benchmarks/pod_rr.py
	$(PY) benchmarks/maglev.py
	$(PY) benchmarks/pod_startup.py
	$(PY) benchmarks/service_programming.py
	$(PY) benchmarks/report.py
	$(PY) benchmarks/plots.py

crds: setup
	$(BIN)/pylium crds export deploy/crds

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bpf/build
