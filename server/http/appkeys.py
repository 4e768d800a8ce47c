"""The typed application keys handlers read: settings, database pool, clock, realtime hub, message writer."""

from __future__ import annotations

from aiohttp import web

from server.clock import Clock
from server.realtime import Hub
from server.services.messages import MessageWriter
from server.settings import Settings
from server.store.db import Pool

SETTINGS_KEY = web.AppKey("settings", Settings)
POOL_KEY = web.AppKey("pool", Pool)
CLOCK_KEY = web.AppKey("clock", Clock)
HUB_KEY = web.AppKey("hub", Hub)
WRITER_KEY = web.AppKey("message_writer", MessageWriter)
