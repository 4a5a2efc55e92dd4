# nmcompile: the two commands a fresh machine needs are `make demo` and `make test`.
# Every dependency a test needs is installed from here; nothing is installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# torch is pinned and installed first: a CPU build of 2.13.0 is on these machines, while any other
# version (asked for directly or by a dependency) pulls several GB of CUDA wheels.
TORCH := torch==2.13.0
# SpikingJelly and Norse declare torchvision (a CUDA torch); their neuron modules need neither.
NO_DEPS_FRAMEWORKS := spikingjelly==2.0.0 norse==1.1.0

.PHONY: setup test lint demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "nmcompile needs Python >= 3.11 (found: $$($(PYTHON) --version)); run make PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,frameworks]'
	$(BIN)/pip install --quiet --no-deps $(NO_DEPS_FRAMEWORKS)
	@$(BIN)/python -c 'import torch, sys; v = torch.__version__; print("torch", v); sys.exit(0 if v.startswith("2.13.0") else 1)' || \
		{ echo "a dependency replaced torch 2.13.0; see the Makefile notes"; exit 1; }
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check nmcompile tests benchmarks examples

test: setup lint
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python examples/demo.py

bench: setup
	$(BIN)/python benchmarks/bench_simulate.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
