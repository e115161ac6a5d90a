# ml-connector: `make run` starts Airflow with the DAGs against the bundled sandboxes; `make test` runs the suite.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)

.PHONY: install test test-slow lint run demo bench clean

$(STAMP): pyproject.toml sandbox/pyproject.toml constraints.txt requirements.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) (Python 3.11) on PATH"; exit 2; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]' -e ./sandbox
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check include sandbox dags plugins tests bench

run: $(STAMP)
	bash scripts/run.sh

demo: $(STAMP)
	bash scripts/demo.sh

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .airflow
