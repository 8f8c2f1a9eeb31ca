# The two set-up commands a newcomer runs on a fresh machine (only Python 3.11 needed):
#   make demo   install into .venv and run the main job on real data
#   make test   install into .venv (with test extras) and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

demo: install
	$(BIN)/orthograd demo

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m 'not slow'

bench: install
	$(BIN)/python benchmarks/step_cost.py
	$(BIN)/python benchmarks/cli_latency.py --demo
	$(BIN)/python benchmarks/manifest_validation.py
	$(BIN)/python benchmarks/memory_and_throughput.py
	$(BIN)/python benchmarks/retain_sweep.py

.PHONY: install demo test test-fast bench
