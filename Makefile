# Two entry points for a fresh Debian machine, run as root: `make demo`, `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install system demo test unit integration lint clean

system:
	sh scripts/system-packages.sh

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: system $(STAMP)

demo: system $(STAMP)
	$(BIN)/python examples/hello/demo.py

test: system $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/python -m pytest -v -rP --durations=15 tests

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: system $(STAMP)
	$(BIN)/python -m pytest -v -m integration tests/integration

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
