"""Tests of client.cli without a server: every command is registered by its area's module.

The e2e tests run the real `spokes` command; these check the parser in-process.
"""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

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
    ["elect"],
    ["recall"],
    ["expel"],
    ["freeze"],
    ["unfreeze"],
    ["revouch"],
    ["restore"],
    ["duress", "make"],
    ["duress", "publish"],
    ["duress", "list"],
    ["council", "create"],
    ["council", "link"],
    ["council", "accept"],
    ["tree"],
    ["relay"],
    ["alert"],
    ["ack"],
    ["alerts"],
    ["daemon"],
    ["mandate"],
    ["propose"],
    ["answer"],
    ["proposals"],
    ["notify", "set"],
    ["notify", "clear"],
    ["log"],
    ["exposure"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_json(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert exited.value.code == 0 and "--json" in capsys.readouterr().out


def options_without_help(parser: argparse.ArgumentParser) -> list[str]:
    """Every option and argument of `parser` and all its subcommands whose help is
    missing or does not say what it is when left out ("default …").

    A required option or argument needs help only; an optional one also its
    default, and the help shows the default's value where it is one a person
    would type (not, say, the seconds a `--for 30m` stands for). Options
    hidden from --help (older spellings) are skipped.
    """
    found = []
    for action in parser._actions:  # argparse offers no public walk of its tree
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += options_without_help(sub)
            continue
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        name = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
        shown = (action.help or "") % {**vars(action), "prog": parser.prog}
        optional = not action.required and (action.option_strings or action.nargs == "?")
        if not shown:
            found.append(f"{name}: no help")
        elif optional and action.nargs != 0 and "default" not in shown:
            found.append(f"{name}: help does not state the default")
        elif optional and action.nargs != 0 and typed_as_given(action):
            value = action.default
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if str(value) not in shown:
                found.append(f"{name}: help does not show the default {value!r}")
    return found


def typed_as_given(action: argparse.Action) -> bool:
    """Whether the default is a value as typed: a string, or a number an int/float option takes."""
    if action.default in (None, argparse.SUPPRESS):
        return False
    return isinstance(action.default, str) or action.type in (int, float)


def test_every_option_of_every_command_has_help_stating_its_default() -> None:
    # Not only --help: the whole tree, so a new option can't slip in bare.
    assert options_without_help(build_parser()) == []


def test_the_option_check_catches_an_option_without_its_default() -> None:
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--bare", type=int, default=3)
    parser.add_argument("--vague", type=int, default=3, help="how many (default: some)")
    parser.add_argument("--shown", type=int, default=3, help="how many (default %(default)s)")
    parser.add_argument("--flag", action="store_true", help="a switch")
    assert options_without_help(parser) == [
        "demo --bare: no help",
        "demo --vague: help does not show the default 3",
    ]


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


@pytest.mark.parametrize(
    ("typed", "meant"),
    [(["sned", "cell", "hi"], "spokes send"), (["invite", "craete"], "spokes invite create")],
)
def test_a_mistyped_command_gets_the_command_it_resembles(
    typed: list[str], meant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--json", *typed])
    assert exited.value.code == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "usage"
    assert f"did you mean `{meant}`?" in error["message"]

    with pytest.raises(SystemExit) as exited:
        main(typed)
    assert exited.value.code == 2
    assert f"did you mean `{meant}`?" in capsys.readouterr().err


def test_a_command_like_no_other_points_to_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--json", "xyzzy"])
    message = json.loads(capsys.readouterr().out)["error"]["message"]
    assert "did you mean" not in message and "`spokes --help` lists them" in message


def refused_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str], *options: str) -> str:
    home = tmp_path / "founder"
    argv = ["--json", "--home", str(home), "network", "create", "--name", "X", *options]
    assert main(argv) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "invalid_policy"
    assert not home.exists()  # refused before anything was made or asked
    message: str = error["message"]
    return message


def test_cell_bounds_a_full_cell_could_not_split_are_refused_never_adjusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --cell-max 3 once lowered the default --cell-min to 3 without a word.
    message = refused_policy(tmp_path, capsys, "--cell-max", "3")
    assert message.startswith("--cell-min 5 (the default), --cell-max 3: ")
    assert "run it again with --cell-max 10 or more." in message
    message = refused_policy(tmp_path, capsys, "--cell-min", "8")
    assert message.startswith("--cell-min 8, --cell-max 12 (the default): ")
    assert "--cell-min 6 or less, or --cell-max 16 or more" in message
    message = refused_policy(tmp_path, capsys, "--cell-min", "4", "--cell-max", "7")
    assert message.startswith("--cell-min 4, --cell-max 7: a full cell of 7 could not split")


def test_other_policy_refusals_name_the_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = refused_policy(tmp_path, capsys, "--vouches", "13")
    assert "--vouches (13) must be between 1 and --cell-max (12)" in message
    assert "`spokes network create --help` shows each option's default" in message


def test_an_unreachable_server_is_named_without_library_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOKES_PASSPHRASE", "correct horse battery staple")
    monkeypatch.setenv("SPOKES_INSECURE_TEST_KDF", "1")
    with socket.socket() as probe:  # a port nothing listens on any more
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    home = str(tmp_path / "home")
    assert main(["--json", "--home", home, "init", "--server", url]) == 0
    capsys.readouterr()
    assert main(["--json", "--home", home, "network", "create", "--name", "X"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "server_unreachable"
    assert error["message"].startswith(
        f"Can't reach the Spokes server at {url}: nothing is listening at that address and port."
    )
    assert "Error" not in error["message"]
