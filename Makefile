# Two entry points: `make demo` and `make test` (`make test-fast` leaves out the slow,
# browser and GPU tests). Each creates .venv when it is missing, installs torch 2.13.0
# first when no torch is installed (pinned, so that the package's torch>=2.2 requirement
# never picks another build), then this package in editable mode.
# TORCH_PIP_ARGS adds pip arguments for that torch install, e.g. the CPU wheel index:
#   make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
TORCH_PIP_ARGS ?=
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rsigradcam-installed

.PHONY: demo test test-fast lint install clean docs docs-serve

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==2.13.0" $(TORCH_PIP_ARGS)
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps "grad-cam==1.5.7"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rsigradcam demo

lint: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest

# Every test but the slow, browser and GPU ones (see the markers in pyproject.toml).
test-fast: lint
	$(PY) -m pytest -m "not slow and not browser and not gpu"

# The documentation site (mkdocs-material): `make docs` builds site/ with --strict, running
# the tutorials in docs/tutorials; `make docs-serve` serves it at http://127.0.0.1:8000.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

clean:
	rm -rf $(VENV) build dist site docs/generated src/*.egg-info .pytest_cache .mypy_cache .ruff_cache \
		.import_linter_cache .grimp_cache
