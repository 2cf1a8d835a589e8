#!/usr/bin/env bash
# The whole suite: lint, migrations check, unit tests on SQLite (with the browser test), then
# everything but the browser test again on PostgreSQL + Redis with a real Celery worker.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh dev

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's chromium for the browser test …"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed: the browser test will be skipped (install Debian's chromium)."
  fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
DJANGO_SETTINGS_MODULE=config.settings.test .venv/bin/python manage.py makemigrations --check --dry-run

export CASEBOOK_VAR_DIR=${CASEBOOK_VAR_DIR:-$(mktemp -d)}
pg_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/casebook}
redis_url=${TEST_CELERY_BROKER_URL:-redis://127.0.0.1:6379/15}

echo "== unit and browser tests on SQLite =="
env -u DATABASE_URL -u CELERY_BROKER_URL .venv/bin/python -m pytest -m "not integration" -q "$@"

echo "== all but the browser test on PostgreSQL + Redis with a Celery worker =="
DATABASE_URL=$pg_url CELERY_BROKER_URL=$redis_url \
  .venv/bin/python -m pytest -m "not browser" -q -p no:cacheprovider "$@"
