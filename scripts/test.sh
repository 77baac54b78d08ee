#!/usr/bin/env bash
# The test suite: set up .venv, then run pytest (arguments are passed through, e.g. -k checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test (say, a -k that matches nothing): report it, do not fail on it.
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests"
  exit 0
fi
exit "$rc"
