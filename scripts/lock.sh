#!/usr/bin/env bash
# Re-make the lock files (exact versions with hashes) from pyproject.toml with pip-tools.
# Every pin that still satisfies pyproject.toml is kept; to move on, pass pip-compile's
# --upgrade (everything) or --upgrade-package NAME (one), e.g. `bash scripts/lock.sh -P django`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install --quiet "pip-tools==7.7.0"
export CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh"
common=(--quiet --strip-extras --generate-hashes --allow-unsafe --no-emit-index-url
  --no-emit-find-links)
"$tools/bin/pip-compile" "${common[@]}" "$@" -o scripts/requirements.lock pyproject.toml
"$tools/bin/pip-compile" "${common[@]}" "$@" --extra dev -o scripts/requirements-dev.lock \
  pyproject.toml
