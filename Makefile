# The two set-up commands a newcomer runs on a fresh machine (only Python 3.11 needed):
#   make demo   install into .venv and run the main job on real data
#   make test   install into .venv (with test extras), install espeak-ng (the speech tests
#               synthesise their corpus with it) and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

# espeak-ng speaks the speech corpus (tests, `orthograd demo asr`); apt needs root or sudo.
espeak:
	@command -v espeak-ng >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq espeak-ng >/dev/null; }

demo: install
	$(BIN)/orthograd demo

demo-asr: install espeak
	$(BIN)/orthograd demo asr

demo-text: install
	$(BIN)/orthograd demo text

test: install espeak
	$(BIN)/python -m pytest -q --durations=25

test-fast: install espeak
	$(BIN)/python -m pytest -q -m 'not slow'

# The fast suite under each CPU kernel level PyTorch dispatches to: none (default), AVX2, and the
# machine's best (unset: AVX-512 where the CPU has it). Other kernels round differently, and the
# fixture models are trained in the test process, so this is how a CI machine with another CPU is met.
test-cpus: install espeak
	for level in default avx2 unset; do \
	  echo "== ATEN_CPU_CAPABILITY=$$level"; \
	  if [ $$level = unset ]; then set -- env -u ATEN_CPU_CAPABILITY; else set -- env ATEN_CPU_CAPABILITY=$$level; fi; \
	  "$$@" $(BIN)/python -m pytest -q -m 'not slow' || exit 1; \
	done

bench: install espeak
	$(BIN)/python benchmarks/step_cost.py
	$(BIN)/python benchmarks/cli_latency.py --demo
	$(BIN)/python benchmarks/manifest_validation.py
	$(BIN)/python benchmarks/memory_and_throughput.py
	$(BIN)/python benchmarks/retain_sweep.py
	$(BIN)/python benchmarks/step_cost_asr.py
	$(BIN)/python benchmarks/speaker_forget.py

.PHONY: install espeak demo demo-asr demo-text test test-fast test-cpus bench
