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
if [ "$#" -gt 0 ]; then
    exec "$PY" -m pytest -q "$@"
fi
# The whole suite as three pytest sessions side by side on the two cores: the
# end-to-end tests in two halves (they mostly wait on `spokes` processes and
# servers) and everything else. Each session has its own embedded PostgreSQL
# and its own temporary folder.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
e2e_a=(tests/e2e/test_lying_server.py tests/e2e/test_revocation.py)
e2e_b=(tests/e2e --ignore=tests/e2e/test_lying_server.py --ignore=tests/e2e/test_revocation.py)
"$PY" -m pytest -q "${e2e_a[@]}" --basetemp="$work/a" >"$work/a.log" 2>&1 &
pid_a=$!
"$PY" -m pytest -q "${e2e_b[@]}" --basetemp="$work/b" >"$work/b.log" 2>&1 &
pid_b=$!
rest=0
"$PY" -m pytest -q --ignore=tests/e2e --basetemp="$work/rest" || rest=$?
a=0
wait "$pid_a" || a=$?
b=0
wait "$pid_b" || b=$?
echo "--- end-to-end tests: ${e2e_a[*]} ---"
cat "$work/a.log"
echo "--- end-to-end tests: the others ---"
cat "$work/b.log"
if [ "$rest" -ne 0 ] || [ "$a" -ne 0 ] || [ "$b" -ne 0 ]; then
    echo "pytest failed (exit codes: the rest $rest, e2e lying/revocation $a, e2e others $b)" >&2
    exit 1
fi
