#!/usr/bin/env bash
# The house style, checked (CI runs it before the tests): ruff over the Python (pyproject.toml's [tool.ruff]) and
# clang-format over the native tree (.clang-format; the vendored third_party left as its authors wrote it).
# Fix what it finds with: .venv/bin/ruff check --fix . && clang-format -i $(scripts/lint.sh --native-files)
set -euo pipefail
cd "$(dirname "$0")/.."
native_files() {
  find madf/csrc -path madf/csrc/third_party -prune -o \
    \( -name '*.cpp' -o -name '*.h' -o -name '*.hpp' -o -name '*.cu' -o -name '*.cuh' \) -print | sort
}
if [ "${1:-}" = "--native-files" ]; then native_files; exit 0; fi
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
"$PY" -m ruff check madf tests benchmarks scripts
if command -v clang-format >/dev/null 2>&1; then
  native_files | xargs clang-format --dry-run --Werror
  echo "lint: ruff and clang-format clean"
else
  echo "lint: clang-format not installed (apt install clang-format); the native tree was not checked" >&2
  exit 1
fi
