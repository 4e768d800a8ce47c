"""The `spokes` command: argparse in front of the client, one module per area of commands.

Each area module (setup, network, vetting, revoke, cells, motions) holds its
commands' handlers and a `register(commands)` that adds them to the parser;
client/cli/common.py holds what they share (Output, errors, the keystore
and client they open). A new area (`spokes council …`) is a new module
here, named in AREAS. The rule of the output is common.py's: with --json,
exactly one JSON object on stdout, the result or {"error": {"code",
"message"}}; exit status 0 on success, 2 for usage errors, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from collections.abc import Sequence

from client.cli import (
    alerts,
    cells,
    council,
    duress,
    elections,
    exclusion,
    history,
    motions,
    network,
    notify,
    proposals,
    relays,
    revoke,
    setup,
    vetting,
)
from client.cli.common import Commands, Handler, Parser, common_options, print_error
from client.errors import ClientError
from crypto.errors import CryptoError

AREAS = (
    setup,
    network,
    vetting,
    revoke,
    cells,
    motions,
    elections,
    exclusion,
    duress,
    council,
    proposals,
    relays,
    alerts,
    notify,
    history,
)


def build_parser() -> Parser:
    parser = Parser(prog="spokes", description="Member client of a Spokes organizing network.")
    common_options(parser, top=True)
    commands = Commands(parser, "command")
    for area in AREAS:
        area.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    Parser.json_mode = "--json" in args_list
    args = build_parser().parse_args(args_list)
    handler: Handler = args.handler
    try:
        output = asyncio.run(handler(args))
    except ClientError as exc:
        print_error(exc.code, exc.message, args.json)
        return 1
    except KeyboardInterrupt:
        print_error("interrupted", "Stopped; nothing more was sent.", args.json)
        return 130
    except CryptoError as exc:
        # A check in crypto/ that a verification step did not wrap: whatever
        # the server sent did not verify, and nothing was accepted.
        print_error(
            "verification_failed",
            f"Something the server sent does not verify ({exc}). Nothing was accepted; "
            "the server may be faulty or lying, so tell your cell in person.",
            args.json,
        )
        return 1
    except Exception as exc:  # noqa: BLE001 - the last word: one JSON line, never a traceback
        if os.environ.get("SPOKES_DEBUG") == "1":
            traceback.print_exc()
        print_error(
            "internal_error",
            f"spokes hit an unexpected error ({type(exc).__name__}: {exc}); it stopped there. "
            "Run the command again; if it repeats, report it (SPOKES_DEBUG=1 shows details).",
            args.json,
        )
        return 1
    if output.streamed:
        pass
    elif args.json:
        print(json.dumps(output.data))
    else:
        print(output.text)
    return 0
