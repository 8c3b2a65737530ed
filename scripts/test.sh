#!/usr/bin/env bash
# The whole test run: lint, types, then the test suite (slow fault-injection
# runs included; pass -m 'not slow' to skip them locally).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH:/usr/sbin:/sbin"
echo "== ruff" && ruff check .
echo "== mypy" && mypy
echo "== pytest" && pytest "$@"
