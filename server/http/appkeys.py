"""The typed application keys handlers read: settings, database pool, clock, realtime hub,
message writer, and the metrics (present only when they are served)."""

from __future__ import annotations

from aiohttp import web

from server.clock import Clock
from server.metrics import Metrics
from server.realtime.hub import Hub
from server.services import Pool
from server.services.message_writer import MessageWriter
from server.settings import Settings

SETTINGS_KEY = web.AppKey("settings", Settings)
POOL_KEY = web.AppKey("pool", Pool)
CLOCK_KEY = web.AppKey("clock", Clock)
HUB_KEY = web.AppKey("hub", Hub)
WRITER_KEY = web.AppKey("message_writer", MessageWriter)
METRICS_KEY = web.AppKey("metrics", Metrics)
