# Sourced by run.sh and test.sh: make .venv and install the project (with extras in $1) from the
# lock file, exact versions checked by their hashes, when the lock changed since the last install.
set -euo pipefail
PYTHON=${PYTHON:-python3}
extras=${1:-}
lock=scripts/requirements${extras:+-$extras}.lock
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "Installing Casebook${extras:+ with [$extras]} into .venv from $lock …"
  .venv/bin/python -m pip install --quiet --require-hashes -r "$lock"
  # The project itself, editable, with nothing more: every dependency came from the lock.
  .venv/bin/python -m pip install --quiet --no-deps -e .
  touch "$stamp"
fi
