#!/usr/bin/env bash
# Install everything the tests need (see scripts/setup.sh) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export MPLCONFIGDIR="${MPLCONFIGDIR:-$(mktemp -d)}" ORT_DISABLE_TELEMETRY=1
.venv/bin/ruff check gradcraft tests benchmarks examples
status=0
.venv/bin/python -m pytest -n 2 -q "$@" || status=$?
# pytest exits 5 when it collected no tests: that is a failure of the suite, not a pass
if [ "$status" = 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$status"
