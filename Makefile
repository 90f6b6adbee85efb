# Two entry points for a fresh Debian machine, run as root: `make demo`, `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.installed-test
# The unit suite runs on Python 3.12 too, where there is one (pyenv's here).
# (pyenv's own first: its shim answers for python3.12 and fails when 3.12 is not the selected one)
PY312   ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
VENV312 := .venv312
T312    := $(VENV312)/.installed-test

.PHONY: install system system-test demo test unit unit312 integration lint clean

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
	$(MAKE) unit312

unit: $(TSTAMP)
	$(BIN)/python -m pytest -q tests/unit

$(T312): pyproject.toml
	$(PY312) -m venv $(VENV312)
	$(VENV312)/bin/pip install -q --upgrade pip
	$(VENV312)/bin/pip install -q -e '.[test]'
	touch $(T312)

unit312:  # the unit suite on Python 3.12 (said and skipped where there is none)
ifeq ($(PY312),)
	@echo "no python3.12 on this machine: the unit suite ran on $(PY) only"
else
	$(MAKE) $(T312)
	$(VENV312)/bin/python -m pytest -q tests/unit
endif

integration: system-test $(TSTAMP)
	$(BIN)/python -m pytest -v -m integration tests/integration

lint: $(TSTAMP)
	$(BIN)/ruff check src tests examples bench scripts
	$(BIN)/ruff format --check src tests examples bench scripts
	$(BIN)/lint-imports --no-logo

clean:
	rm -rf $(VENV) $(VENV312) build *.egg-info src/*.egg-info
