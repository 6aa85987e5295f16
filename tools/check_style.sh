#!/usr/bin/env bash
# The project's one style, checked as CI checks it (.ci/run): ruff's lint and
# format for Python (pyproject.toml), clang-format for C (.clang-format).
# With --fix, applies the fixes instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t c_files < <(git ls-files '*.c' '*.h')
if [ "${1:-}" = "--fix" ]; then
  ruff check --fix .
  ruff format .
  clang-format -i "${c_files[@]}"
else
  ruff check .
  ruff format --check .
  clang-format --dry-run -Werror "${c_files[@]}"
fi
