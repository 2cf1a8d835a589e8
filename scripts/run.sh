#!/usr/bin/env bash
# The embedded default: SQLite, a file-system broker, one Celery worker (with its scheduler) in
# its own process, and the web server on 127.0.0.1:8000. Nothing else to install.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}
var=${CASEBOOK_VAR_DIR:-var}
mkdir -p "$var/log" "$var/broker/queue" "$var/broker/processed" "$var/broker/control"
host=${CASEBOOK_HOST:-127.0.0.1}
port=${CASEBOOK_PORT:-8000}

.venv/bin/python manage.py migrate --no-input -v 0
.venv/bin/python manage.py load_demo

# The worker is restarted if it ever stops, so labels never wait on a dead worker unnoticed.
supervise_worker() {
  local child
  trap 'kill $child 2>/dev/null; wait $child 2>/dev/null; exit 0' TERM INT
  while true; do
    .venv/bin/celery -A config worker --beat --schedule "$var/celerybeat-schedule" \
      -Q default,ml --concurrency 1 --loglevel INFO >>"$var/log/worker.log" 2>&1 &
    child=$!
    wait $child || true
    echo "$(date -Is) the worker stopped; restarting it in 2 s" >>"$var/log/worker.log"
    sleep 2
  done
}
supervise_worker &
worker=$!
trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null' EXIT INT TERM

cat <<MSG

  Casebook is running at http://$host:$port/
  Log in as clinician, clinician2, reviewer, scientist or admin (password: casebook-demo).
  The Django admin is at http://$host:$port/admin/: scientist sees the demo projects' runs,
  versions and deployments and retrains, deploys and rolls back there; admin sees everything.
  The API is at /api/docs/.
  Worker log: $var/log/worker.log. Stop with Ctrl-C.

MSG
.venv/bin/python manage.py runserver "$host:$port" --noreload
