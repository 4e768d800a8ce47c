"""The import contracts in pyproject.toml hold, and each one fails when its layer is crossed.

``lint-imports`` runs against a small stand-in of the three packages, built
in a temporary folder with the project's own contracts: first clean, then
with one forbidden import at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# The modules the contracts name, each empty until a case adds an import.
MODULES = (
    "crypto/__init__.py",
    "crypto/roster.py",
    "client/__init__.py",
    "client/sdk.py",
    "server/__init__.py",
    "server/http/__init__.py",
    "server/http/groups.py",
    "server/services/__init__.py",
    "server/services/groups.py",
    "server/store/__init__.py",
    "server/store/groups.py",
)


def lint(
    tmp_path: Path, crossing: tuple[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for module in MODULES:
        path = tmp_path / module
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    # The allowed way down, so that a clean run has imports to check.
    (tmp_path / "server/http/groups.py").write_text("import server.services.groups\n")
    (tmp_path / "server/services/groups.py").write_text(
        "import server.store.groups\nimport crypto.roster\n"
    )
    (tmp_path / "client/sdk.py").write_text("import crypto.roster\n")
    if crossing is not None:
        module, imported = crossing
        with (tmp_path / module).open("a") as source:
            source.write(f"import {imported}\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_as_they_should_be_pass(tmp_path: Path) -> None:
    result = lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "crossing",
    [
        ("crypto/roster.py", "server.store.groups"),
        ("crypto/roster.py", "client.sdk"),
        ("client/sdk.py", "server.services.groups"),
        ("server/services/groups.py", "client.sdk"),
        ("server/http/groups.py", "server.store.groups"),
        ("server/store/groups.py", "server.services.groups"),
        ("server/services/groups.py", "server.http.groups"),
    ],
    ids=lambda c: f"{c[0]}->{c[1]}" if isinstance(c, tuple) else str(c),
)
def test_a_crossed_layer_fails_the_check(tmp_path: Path, crossing: tuple[str, str]) -> None:
    result = lint(tmp_path, crossing)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout.upper()


def test_the_project_keeps_its_contracts() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
