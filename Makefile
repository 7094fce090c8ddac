# Two commands for a fresh machine: `make run` (main job) and `make test` (the tests).
# Each sets up its own virtual environment; torch is pinned to the CPU build 2.13.0.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow lint check contract bench reports clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/deepprl demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n auto --dist loadfile

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

contract: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH ../shared/checks/cli-contract

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

reports: $(STAMP)
	scripts/reports.sh

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
