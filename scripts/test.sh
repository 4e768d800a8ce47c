#!/usr/bin/env bash
# The whole check: install into .venv, then ruff, mypy, the import contracts and pytest.
# Any failure fails.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
PY=.venv/bin/python
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[test]'

"$PY" -m ruff check .

# mypy only on packages that exist yet (an empty directory is work not started).
targets=()
for pkg in crypto server client; do
    if [ -f "$pkg/__init__.py" ]; then targets+=("$pkg"); fi
done
"$PY" -m mypy "${targets[@]}"

# The layers (pyproject.toml [tool.importlinter]): fails when one is crossed.
.venv/bin/lint-imports --no-cache

# pytest exits 5 when it collected nothing; that is a failure too.
"$PY" -m pytest -q "$@"
