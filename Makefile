# Two commands: `make demo` (a trained surrogate with a rollout, plots and metrics in runs/demo)
# and `make test` (the whole test suite). Both create .venv and install what they need first.
#
# torch is installed on its own, pinned, before the package: on a CPU machine the pinned version
# resolves to the CPU wheel; an unpinned torch would pull several GB of CUDA packages. On a GPU
# machine, choose the build that matches your CUDA, e.g.
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cu126

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?= -n 2

STAMP := $(VENV)/.installed

.PHONY: install demo test fuzz lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sciflow demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# the long fuzz run of docs/reliability.md (CI runs a bounded, derandomized version in `make test`)
fuzz: $(STAMP)
	SCIFLOW_FUZZ=long $(BIN)/python -m pytest -q tests/fuzz -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check sciflow tests benchmarks

clean:
	rm -rf runs/demo .pytest_cache
