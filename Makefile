# Casebook: `make run` serves the app with demo data; `make test` runs the whole suite.
PYTHON ?= python3

.PHONY: run test lint bench prod-smoke
run:
	PYTHON=$(PYTHON) bash scripts/run.sh

test:
	PYTHON=$(PYTHON) bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench:
	.venv/bin/python bench/run.py

# The production topology (gunicorn x2, Celery ml and default workers, beat) on this machine's
# PostgreSQL and Redis, driven through HTTP, then stopped.
prod-smoke:
	.venv/bin/python scripts/prod_topology.py smoke
