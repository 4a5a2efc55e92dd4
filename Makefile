# nmcompile: the two commands a fresh machine needs are `make demo` and `make test`.
# Every dependency a test needs is installed from here; nothing is installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# torch is pinned and installed first: a CPU build of 2.13.0 is on these machines, while any other
# version (asked for directly or by a dependency) pulls several GB of CUDA wheels.
TORCH := torch==2.13.0
# SpikingJelly and Norse declare torchvision (a CUDA torch); their neuron modules need neither. Sinabs declares
# samna (the Speck SDK, a large binary), matplotlib and nir<=1.0.4; its layers need none of them (pbr is installed
# through the frameworks extra).
NO_DEPS_FRAMEWORKS := spikingjelly==2.0.0 norse==1.1.0 sinabs==3.1.3

.PHONY: setup test lint demo bench clean clean-lava tools

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
	@$(BIN)/python -c 'import numba, numpy; print("numba", numba.__version__, "numpy", numpy.__version__)' || \
		{ echo "numba does not import with the installed numpy; see pyproject.toml"; exit 1; }
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check nmcompile tests benchmarks examples

# Lava 0.10 needs Python 3.10 (lava-nc declares >=3.10,<3.11): its own venv, used by the Loihi conformance
# tests, `nmcompile verify --board lava://` and benchmarks/bench_lava.py. It lives per user, outside the checkout,
# where the lava:// board looks when NMC_LAVA_PYTHON is not set: $XDG_DATA_HOME/nmcompile/lava-venv (default
# ~/.local/share/nmcompile/lava-venv), shared by every checkout and by an installed nmcompile. `make LAVA_VENV=DIR`
# puts it elsewhere; test, demo and bench run with NMC_LAVA_PYTHON set to its interpreter. lava-dl is not installed
# (it pulls a CUDA torch of several GB).
DATA_HOME := $(if $(filter /%,$(XDG_DATA_HOME)),$(XDG_DATA_HOME),$(HOME)/.local/share)
LAVA_VENV ?= $(DATA_HOME)/nmcompile/lava-venv
LAVA_PYTHON := $(LAVA_VENV)/bin/python
LAVA_STAMP := $(LAVA_VENV)/.installed
WITH_LAVA := NMC_LAVA_PYTHON=$(LAVA_PYTHON)

# two pytest-xdist workers: CI has 2 cores (the suite took 14-16 min in one process on a warm numba cache, 10 min in two)
test: setup lint lava-env lava-netx tools
	$(WITH_LAVA) $(BIN)/python -m pytest -q -n 2

demo: setup lava-env tools
	$(WITH_LAVA) $(BIN)/python examples/demo.py

bench: setup lava-env tools
	$(BIN)/python benchmarks/bench_simulate.py
	$(BIN)/python benchmarks/bench_partition.py
	$(WITH_LAVA) $(BIN)/python benchmarks/bench_lava.py
	$(BIN)/python benchmarks/bench_fpga.py
	$(BIN)/python benchmarks/bench_spinnaker2.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

# The Lava venv is shared by every checkout of this user: removed only on request.
clean-lava:
	rm -rf $(LAVA_VENV)
# python3.10 on PATH if it runs (a pyenv shim without 3.10 selected does not), else pyenv's newest 3.10.
PYTHON310 ?= $(shell (python3.10 -c 'import sys' >/dev/null 2>&1 && command -v python3.10) || \
	(command -v pyenv >/dev/null 2>&1 && ls "$$(pyenv root)"/versions/3.10.*/bin/python3.10 2>/dev/null | tail -n 1))

.PHONY: lava-env
lava-env: $(LAVA_STAMP)

$(LAVA_STAMP):
	@test -n "$(PYTHON310)" || { echo "Lava needs Python 3.10: install python3.10 (apt install python3.10-venv) or run 'pyenv install 3.10.13', then make lava-env"; exit 1; }
	@echo "creating the Lava venv in $(LAVA_VENV)"
	@mkdir -p "$(dir $(LAVA_VENV))"
	$(PYTHON310) -m venv "$(LAVA_VENV)"
	"$(LAVA_VENV)/bin/pip" install --quiet --upgrade pip
	"$(LAVA_VENV)/bin/pip" install --quiet lava-nc==0.10.0
	"$(LAVA_PYTHON)" -c 'import lava.magma; print("lava", "ok")'
	touch "$(LAVA_STAMP)"

# lava-dl's netx reader, the reference for nmcompile's .net reader (tests/frontend/test_netx.py): lava-dl 0.6.0 and
# h5py installed with --no-deps into a folder of their own next to the Lava venv (lava-dl declares a CUDA torch; the
# netx reader needs only numpy, h5py and lava-nc; the test runs the Lava interpreter with this folder on PYTHONPATH).
LAVA_NETX := $(LAVA_VENV)/netx
LAVA_NETX_STAMP := $(LAVA_NETX)/.installed

.PHONY: lava-netx
lava-netx: $(LAVA_NETX_STAMP)

$(LAVA_NETX_STAMP): $(LAVA_STAMP)
	"$(LAVA_VENV)/bin/pip" install --quiet --no-deps --target "$(LAVA_NETX)" lava-dl==0.6.0 h5py==3.16.0
	touch "$(LAVA_NETX_STAMP)"

# System tools: Verilator (builds the FPGA RTL's conformance model), Yosys (resource estimates), a C++ compiler and make
# (Verilator's build), ccache (faster rebuilds); arm-none-eabi-gcc with newlib and qemu-system-arm (the SpiNNaker 2
# PE program, run on an emulated Cortex-M4). Installed with apt-get when missing and root; apt waits up to 10 minutes
# for another apt/dpkg holding its lock instead of failing.
TOOL_PACKAGES := verilator yosys g++ make ccache gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
APT_WAIT := -o DPkg::Lock::Timeout=600

tools:
	@missing=""; for t in verilator yosys g++ make arm-none-eabi-gcc qemu-system-arm; do \
		command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if command -v arm-none-eabi-gcc >/dev/null 2>&1 && \
		! test -e "$$(arm-none-eabi-gcc -print-file-name=libc_nano.a)"; then missing="$$missing newlib"; fi; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing$$missing with apt-get (waits for another apt/dpkg to finish)"; \
			apt-get $(APT_WAIT) update -qq && DEBIAN_FRONTEND=noninteractive apt-get $(APT_WAIT) install -y -qq \
				--no-install-recommends $(TOOL_PACKAGES) || \
				{ echo "apt-get failed; install them with: sudo apt-get install --no-install-recommends $(TOOL_PACKAGES)"; exit 1; }; \
		else \
			echo "missing:$$missing. Install them with: sudo apt-get install --no-install-recommends $(TOOL_PACKAGES)"; exit 1; \
		fi; \
	fi
