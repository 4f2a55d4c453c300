#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml's dependencies (run after changing them):
#   bash scripts/lock.sh            # newest versions allowed by pyproject.toml
#   bash scripts/lock.sh --upgrade-package NAME   # just one package
# requirements.lock: what the agent image installs (runtime dependencies);
# requirements-dev.lock: what scripts/setup.sh installs into .venv (runtime + dev tools).
# Both pin every package with hashes, so a fresh machine gets what the tests passed with.
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || { echo "lock.sh: run scripts/setup.sh first (no .venv)" >&2; exit 1; }
"$python" -m pip install -q --disable-pip-version-check uv
uv=.venv/bin/uv
common=(--generate-hashes --python-version 3.11 --quiet "$@")
"$uv" pip compile pyproject.toml -o requirements.lock "${common[@]}"
"$uv" pip compile pyproject.toml --extra dev -c requirements.lock \
    -o requirements-dev.lock "${common[@]}"
echo "lock.sh: wrote requirements.lock and requirements-dev.lock"
