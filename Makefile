# Two entry points for a fresh Debian machine, run as root: `make demo`, `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.installed-test

.PHONY: install system system-test demo test unit integration lint clean

system:  # what headway needs on this machine
	sh scripts/system-packages.sh run

system-test:  # and what only the tests use (Redis with TLS, sshd, Chromium, openssl)
	sh scripts/system-packages.sh test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(STAMP)

$(TSTAMP): $(STAMP)  # the test tools (pytest, ruff, selenium) on top
	$(BIN)/pip install -q -e '.[test]'
	touch $(TSTAMP)

install: system $(STAMP)

demo: system $(STAMP)
	$(BIN)/python examples/hello/demo.py

test: system-test $(TSTAMP)
	$(BIN)/ruff check src tests examples bench scripts
	$(BIN)/ruff format --check src tests examples bench scripts
	$(BIN)/lint-imports --no-logo
	$(BIN)/python -m pytest -v -rP --durations=15 tests

unit: $(TSTAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: system-test $(TSTAMP)
	$(BIN)/python -m pytest -v -m integration tests/integration

lint: $(TSTAMP)
	$(BIN)/ruff check src tests examples bench scripts
	$(BIN)/ruff format --check src tests examples bench scripts
	$(BIN)/lint-imports --no-logo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
