"""The server's log format: text lines, or one JSON object per line (``--log-format json``).

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger`` and
``message``, plus the access log's fields when the line is one
(``method``, ``route`` template, ``status``, ``duration_ms``: see
server/http/middleware.py). Nothing else of a record is copied: only the
fields named in ``ACCESS_FIELDS``, and of an exception only its type, never
its text or traceback (an exception's message may quote what a member sent).
The server logs no addresses, tokens or member data in the first place; this
format adds none.

aiohttp's own server log is the exception: it names the client's address when
it refuses a malformed request ("Error handling request from 10.1.2.3"), and
the exception's text quotes the bytes it refused. ``configure_logging``
filters that logger in both formats: the address goes, and of the exception
only its type stays; a request it could not parse is logged at INFO (shown with -v).
asyncpg's pool log loses its tracebacks (``OutageWithoutTraceback``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

ACCESS_FIELDS = ("method", "route", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
AIOHTTP_SERVER_LOGGER = "aiohttp.server"
ASYNCPG_POOL_LOGGER = "asyncpg.pool"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with only the fields the module docstring names."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ACCESS_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
        return json.dumps(line, ensure_ascii=False, default=str)


class ForgetClient(logging.Filter):
    """For aiohttp's server log: no client address, and an exception by its type only.

    A request aiohttp could not parse (too long a line, a malformed header: the
    client's fault, answered 400) is logged at INFO, not ERROR: a flood of
    them must not flood the log too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc_type = record.exc_info[0] if record.exc_info else None
        if exc_type is not None and issubclass(exc_type, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            if not logging.getLogger(record.name).isEnabledFor(logging.INFO):
                return False
        message = str(record.msg)
        if message.endswith(" from %s"):  # "Error handling request from %s", request.remote
            record.msg, record.args = message.removesuffix(" from %s"), ()
        if record.exc_info and record.exc_info[0] is not None:
            record.msg = f"{record.msg} ({record.exc_info[0].__name__})"
            record.exc_info, record.exc_text = None, None
        return True


class OutageWithoutTraceback(logging.Filter):
    """For asyncpg's pool log: an exception by its type only, no traceback.

    While PostgreSQL is away asyncpg's pool tries to reopen its floor of
    connections and logs "Failed to restore the pool connection floor;
    retrying" with a whole traceback, at every try. The outage is already
    answered (503) and counted (server/metrics.py); one line a try says it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            record.msg = f"{record.getMessage()} ({record.exc_info[0].__name__})"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def _add_once(logger_name: str, kind: type[logging.Filter]) -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())


def configure_logging(log_format: str, level: int) -> None:
    """Send the server's log to stderr, as text lines or as JSON (``log_format``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    _add_once(AIOHTTP_SERVER_LOGGER, ForgetClient)
    _add_once(ASYNCPG_POOL_LOGGER, OutageWithoutTraceback)
