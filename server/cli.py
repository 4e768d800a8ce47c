"""The ``spokes-server`` command: ``serve`` and ``migrate``.

Without a database URL both start the embedded PostgreSQL in the data folder,
so one command runs the server on a fresh machine. ``serve`` prints exactly
one line to stdout, ``listening on http://HOST:PORT``, once it accepts
connections; everything else goes to the log (stderr), as text or, with
``--log-format json``, one JSON object per line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from aiohttp import web

from server.app import create_app
from server.logs import configure_logging
from server.migrate import MigrationError, MigrationReport, migrate_url
from server.pg import EmbeddedPostgres, ensure_database, start_embedded
from server.settings import Settings, SettingsError, load_settings

log = logging.getLogger("spokes.server")

MAX_WORKERS = 64
WORKER_START_S = 60.0
WORKER_STOP_S = 30.0
# The collector's generations (CPython's default: 700, 10, 10). Every socket, session
# and cached statement made after start-up is long-lived; at 1,000 sockets a full
# collection walked them in 110-117 ms (collecting nothing), several times in each
# 15 s phase of bench/messages.py, stalling delivery. Young collections every
# 20,000 allocations instead of 700 make the full ones rare (one, 66 ms, in a whole
# 1,000-member run); a young collection then takes up to about 10 ms.
GC_THRESHOLDS = (20_000, 20, 10)
# How long a stopping server lets requests in flight finish (aiohttp's default is
# 60 s): under the 30 s compose and the worker join give, and the unit's 40 s.
SHUTDOWN_TIMEOUT_S = 20.0
CHILD_CHECK_S = 1.0

# The parent's ends of its workers' lifelines: held open until the parent exits.
_LIFELINES: list[Connection] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spokes-server``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            data_dir=args.data_dir,
            database_url=args.database_url,
            smtp_host=getattr(args, "smtp_host", None),
            smtp_port=getattr(args, "smtp_port", None),
            smtp_user=getattr(args, "smtp_user", None),
            smtp_from=getattr(args, "smtp_from", None),
            smtp_starttls=getattr(args, "smtp_starttls", None),
            mail_key_file=getattr(args, "mail_key_file", None),
            metrics_port=getattr(args, "metrics_port", None),
            metrics_host=getattr(args, "metrics_host", None),
            log_format=getattr(args, "log_format", None),
        )
        configure_logging(settings.log_format, logging.INFO if args.verbose else logging.WARNING)
        if args.command == "serve":
            if not 1 <= args.workers <= MAX_WORKERS:
                raise SettingsError(f"--workers must be 1 to {MAX_WORKERS}")
            if (settings.metrics_port or 0) + args.workers - 1 > 65535:
                raise SettingsError("--metrics-port plus --workers must stay within 65535")
            _run(_serve(settings, args.workers))
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
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT), e.g. one per core (default 1)",
    )
    _mail_options(serve)
    _observability_options(serve)
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
            help="PostgreSQL URL (default SPOKES_DATABASE_URL, or none: an embedded "
            "PostgreSQL runs in the data folder)",
        )
        sub.add_argument("-v", "--verbose", action="store_true", help="log requests and startup")
    return parser


def _mail_options(serve: argparse.ArgumentParser) -> None:
    mail = serve.add_argument_group(
        "mail notices",
        "Members who opt in (`spokes notify set`) get content-free notices by mail. "
        "Notices are on with both a mail server and a mail key.",
    )
    mail.add_argument(
        "--smtp-host",
        help="mail server to hand notices to (default SPOKES_SMTP_HOST, or none: off)",
    )
    mail.add_argument(
        "--smtp-port",
        type=int,
        help="its port (default SPOKES_SMTP_PORT, else 587 with --smtp-starttls and 25 without)",
    )
    mail.add_argument(
        "--smtp-user",
        help="login at the mail server (default SPOKES_SMTP_USER); its password is read "
        "from SPOKES_SMTP_PASSWORD only",
    )
    mail.add_argument("--smtp-from", help="From address of notices (default SPOKES_SMTP_FROM)")
    mail.add_argument(
        "--smtp-starttls",
        action="store_true",
        default=None,
        help="require STARTTLS before anything is sent (default SPOKES_SMTP_STARTTLS=1, else off)",
    )
    mail.add_argument(
        "--mail-key-file",
        type=Path,
        help="file (mode 0600) holding the 32-byte key, hex or base64, that seals members' "
        "addresses; never stored in the database (default SPOKES_MAIL_KEY_FILE, or the key "
        "itself in SPOKES_MAIL_KEY)",
    )


def _observability_options(serve: argparse.ArgumentParser) -> None:
    observe = serve.add_argument_group(
        "observability",
        "Prometheus metrics on a port of their own (off by default) and the log's format. "
        "Neither ever names a member, group, token or address.",
    )
    observe.add_argument(
        "--metrics-port",
        type=int,
        help="serve GET /metrics on this port; with --workers N, worker k uses this port + k "
        "(default SPOKES_METRICS_PORT, or none: metrics off)",
    )
    observe.add_argument(
        "--metrics-host",
        help="address the metrics port binds (default 127.0.0.1, or SPOKES_METRICS_HOST); "
        "never expose it publicly",
    )
    observe.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines as text or as one JSON object each (default SPOKES_LOG_FORMAT, or text)",
    )


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


async def _serve(settings: Settings, workers: int = 1) -> None:
    _say_whether_mail_is_on(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with _database(settings) as (url, _):
        effective = _with_url(settings, url)
        runner = await _start_site(effective, reuse_port=workers > 1)
        children: list[BaseProcess] = []
        try:
            host, port = _bound_address(runner)
            # The other workers are instances like any other (the app keeps no
            # state another instance needs), bound to the same port: the
            # kernel spreads connections over them.
            children = await asyncio.to_thread(
                _start_workers, effective.with_changes(host=host, port=port), workers - 1
            )
            print(f"listening on http://{host}:{port}", flush=True)
            await _until_stopped(stop, children)
            log.info("stopping")
        finally:
            await asyncio.to_thread(_stop_workers, children)
            await runner.cleanup()


def _say_whether_mail_is_on(settings: Settings) -> None:
    """Once, at start: mail notices are off (and why), or where they go."""
    off = settings.mail_off_reason()
    if off is not None:
        log.warning("%s", off)
    elif settings.smtp is not None:
        log.info("mail notices go to %s:%d", settings.smtp.host, settings.smtp.port)


async def _start_site(settings: Settings, *, reuse_port: bool) -> web.AppRunner:
    app = create_app(settings)
    # access_log=None: aiohttp's access log would record client addresses;
    # our middleware logs method, route template, status and duration.
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner,
            settings.host,
            settings.port,
            reuse_port=reuse_port or None,
            backlog=settings.listen_backlog,
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    # What start-up made (modules, the app, the pool) lives as long as the process:
    # out of the collector's sight, so that its full collections (a pause of
    # delivery, up to 40 ms measured under load) walk only what came after.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return runner


async def _until_stopped(stop: asyncio.Event, children: list[BaseProcess]) -> None:
    """Until SIGTERM/SIGINT, or until a worker dies (then stop all: a supervisor restarts)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CHILD_CHECK_S)
        dead = [c for c in children if not c.is_alive()]
        if dead:
            log.error("a server worker exited (code %s); stopping", dead[0].exitcode)
            return


def _start_workers(settings: Settings, count: int) -> list[BaseProcess]:
    context = multiprocessing.get_context("spawn")
    started: list[BaseProcess] = []
    try:
        for _ in range(count):
            ready = context.Event()
            # The worker holds one end of a pipe and stops when it reads EOF:
            # the parent died, however it died (a SIGKILL runs no clean-up).
            lifeline, theirs = context.Pipe(duplex=False)
            # Not daemonic: a worker starts a signature helper of its own. The
            # parent stops every worker itself (_stop_workers).
            child = context.Process(
                target=_worker_main,
                args=(
                    _worker_settings(settings, len(started) + 1),
                    logging.getLogger().getEffectiveLevel(),  # -v holds for every worker
                    ready,
                    lifeline,
                ),
                daemon=False,
            )
            child.start()
            lifeline.close()
            _LIFELINES.append(theirs)
            started.append(child)
            if not ready.wait(WORKER_START_S) or not child.is_alive():
                raise RuntimeError("a server worker did not start")
    except BaseException:
        _stop_workers(started)
        raise
    return started


def _stop_workers(children: list[BaseProcess]) -> None:
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join(WORKER_STOP_S)
        if child.is_alive():
            child.kill()


def _worker_settings(settings: Settings, number: int) -> Settings:
    """Worker ``number``'s settings: its metrics (a registry per process) on port + number."""
    if not settings.metrics_port:
        return settings  # off, or 0: a free port of its own
    return settings.with_changes(metrics_port=settings.metrics_port + number)


def _worker_main(settings: Settings, level: int, ready: Any, lifeline: Connection) -> None:
    """One extra server process: the app on the parent's port, until SIGTERM."""
    configure_logging(settings.log_format, level)
    _run(_serve_worker(settings, ready, lifeline))


async def _serve_worker(settings: Settings, ready: Any, lifeline: Connection) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(lifeline.fileno(), stop.set)  # readable only at EOF: the parent is gone
    runner = await _start_site(settings, reuse_port=True)
    try:
        ready.set()
        await stop.wait()
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
