"""Tests of client.cli without a server: every command is registered by its area's module.

The e2e tests run the real `spokes` command; these check the parser in-process.
"""

from __future__ import annotations

import pytest

from client.cli import AREAS, build_parser, main

COMMANDS = [
    ["init"],
    ["whoami"],
    ["unlock"],
    ["lock"],
    ["network", "create"],
    ["invite", "create"],
    ["join"],
    ["pending"],
    ["admit"],
    ["vouch"],
    ["block"],
    ["status"],
    ["revoke"],
    ["cells"],
    ["members"],
    ["profile", "set"],
    ["send"],
    ["read"],
    ["watch"],
    ["motions"],
    ["sign"],
    ["cell", "split"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_json(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert exited.value.code == 0 and "--json" in capsys.readouterr().out


def test_the_areas_register_exactly_these_commands() -> None:
    assert all(callable(area.register) for area in AREAS)
    usage = build_parser().format_usage()
    listed = usage[usage.index("{") + 1 : usage.index("}")].split(",")
    assert sorted(listed) == sorted({c[0] for c in COMMANDS})


def test_a_usage_error_under_json_is_one_json_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--json", "no-such-command"])
    assert exited.value.code == 2
    assert '"code": "usage"' in capsys.readouterr().out
