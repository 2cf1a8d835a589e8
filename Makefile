# Casebook: `make run` serves the app with demo data; `make test` runs the whole suite.
PYTHON ?= python3

.PHONY: run test lint bench prod-check
run:
	PYTHON=$(PYTHON) bash scripts/run.sh

test:
	PYTHON=$(PYTHON) bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench:
	.venv/bin/python bench/run.py
