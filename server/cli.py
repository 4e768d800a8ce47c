"""The ``spokes-server`` command: ``serve`` and ``migrate``.

Without a database URL both start the embedded PostgreSQL in the data folder,
so one command runs the server on a fresh machine. ``serve`` prints exactly
one line to stdout, ``listening on http://HOST:PORT``, once it accepts
connections; everything else goes to the log (stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from server.app import create_app
from server.migrate import MigrationError, MigrationReport, migrate_url
from server.pg import EmbeddedPostgres, ensure_database, start_embedded
from server.settings import Settings, SettingsError, load_settings

log = logging.getLogger("spokes.server")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spokes-server``; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            data_dir=args.data_dir,
            database_url=args.database_url,
        )
        if args.command == "serve":
            _run(_serve(settings))
        else:
            asyncio.run(_migrate(settings))
    except (SettingsError, MigrationError) as exc:
        print(f"spokes-server: {exc}", file=sys.stderr)
        return 2
    return 0


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run the server on uvloop where it is installed (Linux, macOS), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spokes-server",
        description="Run the Spokes server or migrate its database.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="migrate the database, then serve HTTP until SIGTERM/SIGINT",
        description="Apply pending migrations and serve the API. Prints "
        "'listening on http://HOST:PORT' once ready.",
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, or SPOKES_HOST)")
    serve.add_argument(
        "--port", type=int, help="port to bind; 0 picks a free one (default 8080, or SPOKES_PORT)"
    )
    migrate = commands.add_parser(
        "migrate",
        help="apply pending database migrations and exit",
        description='Apply pending migrations; prints {"applied": [...], "current": N}.',
    )
    for sub in (serve, migrate):
        sub.add_argument(
            "--data-dir",
            type=Path,
            help="folder for the server secret and embedded PostgreSQL "
            "(default ./data, or SPOKES_DATA_DIR)",
        )
        sub.add_argument(
            "--database-url",
            help="PostgreSQL URL (or SPOKES_DATABASE_URL); without one, an embedded "
            "PostgreSQL runs in the data folder",
        )
        sub.add_argument("-v", "--verbose", action="store_true", help="log requests and startup")
    return parser


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[tuple[str, MigrationReport]]:
    """Yield a migrated database URL, running embedded PostgreSQL if there is none."""
    embedded: EmbeddedPostgres | None = None
    url = settings.database_url
    try:
        if url is None:
            embedded = await asyncio.to_thread(start_embedded, settings.data_dir)
            await ensure_database(embedded.url("postgres"))
            url = embedded.url()
        report = await migrate_url(url)
        if report.applied:
            log.info("applied migrations %s", list(report.applied))
        yield url, report
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _migrate(settings: Settings) -> None:
    async with _database(settings) as (_, report):
        pass
    print(json.dumps({"applied": list(report.applied), "current": report.current}), flush=True)


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with _database(settings) as (url, _):
        app = create_app(_with_url(settings, url))
        # access_log=None: aiohttp's access log would record client addresses;
        # our middleware logs method, route template, status and duration.
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port)
            await site.start()
            host, port = _bound_address(runner)
            print(f"listening on http://{host}:{port}", flush=True)
            await stop.wait()
            log.info("stopping")
        finally:
            await runner.cleanup()


def _with_url(settings: Settings, url: str) -> Settings:
    return settings.with_changes(database_url=url)


def _bound_address(runner: web.AppRunner) -> tuple[str, int]:
    """The address actually bound (the real port when asked for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return str(address[0]), int(address[1])
    raise RuntimeError("the server is not bound to any TCP socket")


if __name__ == "__main__":
    sys.exit(main())
