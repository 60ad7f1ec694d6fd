# Two commands do all the set-up on a fresh machine: `make train` and `make test` create the project's virtual
# environment (.venv) on first use, install the package with its dev extras into it, and reuse it afterwards
# (re-installed when pyproject.toml changes). People who manage their own environment: pip install -e ".[dev]".
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=
# Two pytest-xdist workers: every test uses one torch thread (tests/conftest.py), so one process leaves a 2-core
# machine half idle. --dist loadfile keeps each test file on one worker (module fixtures: a trained checkpoint, the
# local SLURM cluster, are built once and never twice at once); the session's diagnostics run is trained once and
# shared through a file lock (tests/conftest.py: diag_run). (Not loadgroup: pytest-xdist 3.8 no longer applies
# xdist_group marks under pytest 9.2, pytest-xdist issue #1386.) --no-loadscope-reorder: the files go out in the
# order tests/conftest.py gives them, the longest first (by default xdist orders them by their number of tests, and
# a long file dealt last kept one worker busy alone for 38 s). XDIST= : one process.
XDIST ?= -n 2 --dist loadfile --no-loadscope-reorder

.PHONY: help install train test lint format clean

help:
	@echo "make train [ARGS='model=alexnet ...']   python train.py on the embedded data (creates .venv on first use)"
	@echo "make test  [PYTEST_ARGS='-m \"not slow\"'] [XDIST=]  the test suite on 2 workers (XDIST= : one process)"
	@echo "make lint | make format                  ruff check / ruff format (also run by pre-commit)"

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) train.py $(ARGS)

test: $(STAMP)
	WANDB_MODE=offline $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf .pytest_cache build *.egg-info
