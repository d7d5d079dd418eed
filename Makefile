# ot_pde: the two README commands (`make demo`, `make test`) and friends.
# Everything runs inside .venv, created on first use from python3.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# numba's on-disk cache goes to a writable folder of ours, not beside a read-only install.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
export MPLBACKEND ?= Agg

DEMO_CASE := cases/bb_gaussian_2d.toml
DEMO_OUT  := out/bb_gaussian_2d.h5

.PHONY: demo test test-all test-gpu gpu-check bench docs clean venv install-check

$(VENV)/.stamp-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# .[mpi] brings mpi4py and the MPICH wheel (its mpiexec lands in $(BIN)) for the mpi test.
$(VENV)/.stamp-test: $(VENV)/.stamp-base
	$(PY) -m pip install -q -e '.[test,mpi]'
	touch $@

$(VENV)/.stamp-docs: $(VENV)/.stamp-base
	$(PY) -m pip install -q -e '.[docs]'
	touch $@

venv: $(VENV)/.stamp-test

demo: $(VENV)/.stamp-base
	@mkdir -p out
	$(BIN)/ot-pde run $(DEMO_CASE) -o $(DEMO_OUT)
	$(BIN)/ot-pde plot $(DEMO_OUT) -o out/bb_gaussian_2d.png
	@echo "demo: HDF5 written to $(CURDIR)/$(DEMO_OUT)"
	@echo "demo: figure written to $(CURDIR)/out/bb_gaussian_2d.png"

test: $(VENV)/.stamp-test
	$(PY) -m pytest

# `pip install .` (a wheel, not editable) into a fresh venv, used from outside the checkout.
install-check:
	bash tools/install_check.sh $(PYTHON)

test-all: $(VENV)/.stamp-test
	$(PY) -m pytest -m "not gpu and not mpi"

bench: $(VENV)/.stamp-test
	$(PY) benchmarks/run.py

# -n -W: every cross-reference must resolve and any warning fails the build.
docs: $(VENV)/.stamp-docs
	$(BIN)/sphinx-build -q -n -W --keep-going -b html docs docs/_build/html
	@echo "docs: $(CURDIR)/docs/_build/html/index.html"

clean:
	rm -rf $(VENV) out docs/_build .numba_cache .pytest_cache

test-gpu: $(VENV)/.stamp-test
	$(PY) -m pytest -m gpu $(PYTEST_ARGS)

# On a machine with an NVIDIA GPU: an environment with CuPy, make test-gpu, the GPU
# benchmarks, one report (out/gpu_check/report.md); exit 3 where there is no GPU.
gpu-check:
	bash tools/gpu_check.sh
