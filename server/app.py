"""The application factory: ``create_app(settings, pool)`` wires settings, the
database pool, the clock, middlewares and routes into one aiohttp application.

Rule: the application holds no state another instance would need; anything
shared lives in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from server.clock import Clock
from server.clock import now as system_now
from server.http.appkeys import CLOCK_KEY, HUB_KEY, METRICS_KEY, POOL_KEY, SETTINGS_KEY, WRITER_KEY
from server.http.middleware import access_log_middleware, error_middleware
from server.http.routes import add_routes
from server.metrics import Metrics, serve_metrics
from server.realtime.hub import Hub
from server.services import ratelimit
from server.services.mailer import Mailer
from server.services.message_writer import MessageWriter
from server.settings import Settings
from server.store.db import Pool, create_pool, pool_usage
from server.store.events import EventRow
from server.supervisor import Supervisor
from server.verifier import Verifier

# The keys live in server.http.appkeys so handlers can import them without
# importing this module (which imports the routes). AppKeys compare by
# identity: there must be exactly one definition of each.
__all__ = ["CLOCK_KEY", "HUB_KEY", "POOL_KEY", "SETTINGS_KEY", "WRITER_KEY", "create_app"]

PRUNE_INTERVAL_S = 600

log = logging.getLogger("spokes.app")


def create_app(
    settings: Settings, pool: Pool | None = None, *, clock: Clock = system_now
) -> web.Application:
    """Build the application.

    With ``pool`` the caller owns it (tests); without, the pool is opened on
    ``settings.database_url`` at startup and closed at cleanup.
    """
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[access_log_middleware, error_middleware],
    )
    app[SETTINGS_KEY] = settings
    app[CLOCK_KEY] = clock
    if pool is not None:
        app[POOL_KEY] = pool
    else:
        app.cleanup_ctx.append(_pool_ctx)
    if settings.metrics_port is not None:
        app[METRICS_KEY] = Metrics()
        app.cleanup_ctx.append(_metrics_ctx)
    app.cleanup_ctx.append(_prune_ctx)
    app.cleanup_ctx.append(_mail_ctx)
    # After the pool (cleanup runs in reverse, so the hub stops first).
    app.cleanup_ctx.append(_hub_ctx)
    app.cleanup_ctx.append(_writer_ctx)
    # Open WebSockets would hold shutdown for its whole timeout; close them first.
    app.on_shutdown.append(_close_sockets)
    add_routes(app)
    return app


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The metrics on their own port; the pool and every object are read when scraped."""
    settings, metrics, pool = app[SETTINGS_KEY], app[METRICS_KEY], app[POOL_KEY]
    metrics.watch_pool(lambda: pool_usage(pool))
    runner = await serve_metrics(metrics, settings.metrics_host, settings.metrics_port or 0)
    log.info("metrics on http://%s:%d/metrics", *(metrics.address or ("?", 0)))
    try:
        yield
    finally:
        await runner.cleanup()


def _watch_tasks(app: web.Application, supervisor: Supervisor) -> Supervisor:
    if METRICS_KEY in app:
        app[METRICS_KEY].watch_tasks(lambda: supervisor.crashes)
    return supervisor


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    if settings.database_url is None:
        raise RuntimeError("create_app needs a pool or settings.database_url")
    pool = await create_pool(
        settings.database_url,
        min_size=min(2, settings.db_pool_size),
        max_size=settings.db_pool_size,
        acquire_timeout_s=settings.db_acquire_timeout_s,
    )
    app[POOL_KEY] = pool
    try:
        yield
    finally:
        await pool.close()


async def _prune_ctx(app: web.Application) -> AsyncIterator[None]:
    supervisor = _watch_tasks(app, Supervisor())
    supervisor.start("prune", lambda: _prune_forever(app))
    try:
        yield
    finally:
        await supervisor.stop()


async def _mail_ctx(app: web.Application) -> AsyncIterator[None]:
    """The mail worker, when mail notices are on (server/cli.py says at start if not)."""
    mailer = Mailer.from_settings(app[POOL_KEY], app[SETTINGS_KEY], app[CLOCK_KEY])
    if mailer is None:
        yield
        return
    supervisor = _watch_tasks(app, Supervisor())
    if METRICS_KEY in app:
        app[METRICS_KEY].watch_mail(lambda: mailer.outcomes)
    supervisor.start("mail", mailer.run)
    try:
        yield
    finally:
        await supervisor.stop()


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    metrics = app.get(METRICS_KEY)
    hub = Hub(
        app[POOL_KEY],
        app[SETTINGS_KEY].database_url,
        app[CLOCK_KEY],
        on_notify_lag=metrics.notify_lag if metrics is not None else None,
    )
    await hub.start()
    app[HUB_KEY] = hub
    if metrics is not None:
        metrics.watch_sockets(hub.sockets_count)
        metrics.watch_tasks(lambda: hub.crashes)
    try:
        yield
    finally:
        await hub.stop()


async def _writer_ctx(app: web.Application) -> AsyncIterator[None]:
    verifier = Verifier()
    if app[SETTINGS_KEY].signature_helper:
        await verifier.start()
    hub, metrics = app[HUB_KEY], app.get(METRICS_KEY)

    def on_commit(rows: list[EventRow]) -> None:
        hub.committed(rows)
        if metrics is not None:
            metrics.committed(len(rows))

    writer = MessageWriter(
        app[POOL_KEY],
        app[CLOCK_KEY],
        on_commit=on_commit,
        around_commit=(hub.committing, hub.commit_ended),
        verifier=verifier,
    )
    app[WRITER_KEY] = writer
    try:
        yield
    finally:
        await writer.close()
        await verifier.stop()


async def _close_sockets(app: web.Application) -> None:
    if HUB_KEY in app:
        await app[HUB_KEY].close_all()


async def _prune_forever(app: web.Application) -> None:
    """Delete stale rate-limit windows now and then; every instance may do it."""
    settings = app[SETTINGS_KEY]
    keep_s = max(limit.window_s for limit in settings.rate_limits().values())
    while True:
        await asyncio.sleep(PRUNE_INTERVAL_S)
        try:
            await ratelimit.prune(app[POOL_KEY], app[CLOCK_KEY](), keep_s)
        except Exception as exc:  # pruning is housekeeping; never kill the server for it
            log.warning("rate-limit pruning failed: %s", type(exc).__name__)
