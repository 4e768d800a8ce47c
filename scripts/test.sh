#!/usr/bin/env bash
# The whole check: install into .venv, then ruff, mypy, the import contracts and pytest.
# Any failure fails.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
PY=.venv/bin/python
# `ss` (Debian's iproute2) reads the kernel's listen backlog in
# tests/server/test_cli_serve.py; installed here when the machine lacks it.
if ! command -v ss >/dev/null 2>&1; then
    { apt-get install -y -q iproute2 || { apt-get update -q && apt-get install -y -q iproute2; }; } \
        >/dev/null 2>&1 || echo "could not install iproute2 (ss): the backlog test will fail" >&2
fi
# Debian's nginx runs the proxy configuration of deploy/nginx in
# tests/e2e/test_proxy.py (which runs its own nginx, as this user, on
# loopback); installed here when the machine lacks it.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    { apt-get install -y -q nginx || { apt-get update -q && apt-get install -y -q nginx; }; } \
        >/dev/null 2>&1 || echo "could not install nginx: tests/e2e/test_proxy.py will be skipped" >&2
fi
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Bytecode for the project's own modules, once: with PYTHONDONTWRITEBYTECODE
# set (as on the CI machines) every `spokes` process the tests start would
# otherwise compile them again (~60 ms of each command's ~0.5 s).
"$PY" -m compileall -q crypto server client tests >/dev/null

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
# The whole suite as four pytest sessions side by side on the two cores: the
# end-to-end tests in three parts (they mostly wait on `spokes` processes and
# servers, so they overlap well) and everything else. Each session has its
# own embedded PostgreSQL and its own temporary folder.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Balanced by the session times of the last runs (a clone, 2026-12-03 07:07:
# a 377 s, b 486 s, c 457 s, the rest 498 s), so that none runs long: the two
# slowest server tests (about 20 s each alone) run in part a.
heavy=(tests/server/test_flood_memory.py tests/server/test_pg_restarts.py)
e2e_a=(tests/e2e/test_lying_server.py tests/e2e/test_revocation.py tests/e2e/test_alert_tree.py
    tests/e2e/test_bench_messages.py "${heavy[@]}"
    tests/e2e/test_alerts.py tests/e2e/test_elections.py tests/e2e/test_proxy.py)
e2e_b=(tests/e2e/test_councils.py tests/e2e/test_daemon.py
    tests/e2e/test_proposals.py tests/e2e/test_split_history.py tests/e2e/test_exclusion.py)
e2e_c=(tests/e2e)
for file in "${e2e_a[@]}" "${e2e_b[@]}"; do e2e_c+=(--ignore="$file"); done
pids=()
for part in a b c; do
    declare -n files="e2e_$part"
    "$PY" -m pytest -q "${files[@]}" --basetemp="$work/$part" >"$work/$part.log" 2>&1 &
    pids+=($!)
    unset -n files
done
status=0
rest=(--ignore=tests/e2e)
for file in "${heavy[@]}"; do rest+=(--ignore="$file"); done
"$PY" -m pytest -q "${rest[@]}" --basetemp="$work/rest" || status=1
for index in 0 1 2; do
    part=$(printf 'abc' | cut -c$((index + 1)))
    code=0
    wait "${pids[$index]}" || code=$?
    echo "--- end-to-end tests, part $part (exit $code) ---"
    cat "$work/$part.log"
    if [ "$code" -ne 0 ]; then status=1; fi
done
if [ "$status" -ne 0 ]; then
    echo "pytest failed (see the exit codes above)" >&2
    exit 1
fi
