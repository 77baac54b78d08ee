#!/usr/bin/env bash
# The main job on an embedded default: set up .venv, then run madf-demo (arguments are passed through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/madf-demo "$@"
