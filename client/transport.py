"""HTTP to the Spokes server: the only module that talks to it.

The rule it keeps: every way a request can fail becomes a ClientError. An
error the server sent keeps its status and machine code (ServerError); a
network failure becomes "server_unreachable"; anything that is not the
JSON the API promises becomes "bad_response".

Requests go over one kept-alive connection of the standard library's
http.client, run in a worker thread; only the live feed (a WebSocket) uses
aiohttp, imported when a feed is opened. A command is a process of its own,
and importing aiohttp costs about as much as everything else a command does
(~0.17 s of ~0.4 s on a 2-core machine), so the everyday commands do without.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import json
import socket
import ssl
import time
import urllib.parse
from collections import deque
from typing import TYPE_CHECKING, Any

from client.api import Request
from client.errors import ClientError, FeedClosed, ServerError

if TYPE_CHECKING:
    import aiohttp

TIMEOUT_SECONDS = 30
# A kept-alive connection idle for longer is not reused: the server may have
# closed it (aiohttp's keep-alive is 75 s), and a request lost on a closed
# connection could not be told apart from one the server took.
REUSE_SECONDS = 20


class Transport:
    """Sends API requests to one server; connects lazily, close with `close()`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(
                "bad_server_url",
                f"{base_url!r} is not a server address: use http://HOST:PORT or https://HOST.",
            )
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path
        self._connection: http.client.HTTPConnection | None = None
        self._last_used = 0.0
        self._one_at_a_time = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None  # the live feed's

    async def send(self, request: Request, token: str | None = None) -> Any:
        """Send `request` and return the decoded JSON body of a 2xx answer."""
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = None
        if request.body is not None:
            body = json.dumps(request.body).encode()
            headers["Content-Type"] = "application/json"
        async with self._one_at_a_time:
            try:
                status, text = await asyncio.to_thread(
                    self._exchange, request.method, self._prefix + request.path, body, headers
                )
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                self._drop()
                raise _unreachable(self.base_url, exc) from exc
        data = _decode(text)
        if 200 <= status < 300:
            if data is None:
                raise _not_spokes(self.base_url, status)
            return data
        raise _server_error(self.base_url, status, data)

    def _exchange(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str]:
        """One request and its whole answer, on the kept-alive connection (a worker thread)."""
        if self._connection is None or time.monotonic() - self._last_used > REUSE_SECONDS:
            self._drop()
            self._connection = self._connect()
        connection = self._connection
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read().decode("utf-8", errors="replace")
        self._last_used = time.monotonic()
        if response.will_close:
            self._drop()
        return response.status, text

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=TIMEOUT_SECONDS,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=TIMEOUT_SECONDS)

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def open_feed(self, path: str, token: str) -> Feed:
        """Open the live WebSocket at `path`, logged in with `token`."""
        import aiohttp  # noqa: PLC0415 - only the live feed needs it (see the module's docstring)

        url = self.base_url.replace("http", "ws", 1) + path
        try:
            ws = await self._open().ws_connect(
                url, headers={"Authorization": f"Bearer {token}"}, heartbeat=30
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise ServerError(401, "unauthorized", "the live feed refused the session") from exc
            raise _unreachable(self.base_url, exc) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _unreachable(self.base_url, exc) from exc
        return Feed(ws, self.base_url)

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp  # noqa: PLC0415

        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
        self._drop()
        if self._session is not None:
            await self._session.close()
            self._session = None


class Feed:
    """One open WebSocket: JSON objects in and out."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, base_url: str) -> None:
        self._ws = ws
        self._base_url = base_url
        self._pending: deque[dict[str, Any]] = deque()  # the rest of a batch frame

    @property
    def buffered(self) -> bool:
        """Whether events of a batch frame are waiting (receive returns them at once)."""
        return bool(self._pending)

    async def send(self, message: dict[str, Any]) -> None:
        import aiohttp  # noqa: PLC0415 - loaded already: the feed was opened with it

        try:
            await self._ws.send_str(json.dumps(message))
        except (aiohttp.ClientError, OSError, ConnectionError) as exc:
            raise _unreachable(self._base_url, exc) from exc

    async def receive(self, wait_s: float) -> dict[str, Any] | None:
        """The next JSON object, or None if nothing came within `wait_s` seconds.

        A batch frame ({"type": "batch", "events": [...]}) comes out as its
        events, one per call, in order.
        """
        import aiohttp  # noqa: PLC0415 - loaded already: the feed was opened with it

        if self._pending:
            return self._pending.popleft()
        try:
            message = await self._ws.receive(timeout=wait_s)
        except TimeoutError:
            return None
        except (aiohttp.ClientError, OSError) as exc:
            raise _unreachable(self._base_url, exc) from exc
        if message.type == aiohttp.WSMsgType.TEXT:
            data = _decode(message.data)
            if isinstance(data, dict) and data.get("type") == "batch":
                events = data.get("events")
                if not events or not isinstance(events, list):
                    raise _not_spokes(self._base_url, 101)
                if not all(isinstance(e, dict) for e in events):
                    raise _not_spokes(self._base_url, 101)
                self._pending.extend(events)
                return self._pending.popleft()
            if isinstance(data, dict):
                return data
            raise _not_spokes(self._base_url, 101)
        code = self._ws.close_code
        reason = message.extra if message.type == aiohttp.WSMsgType.CLOSE else None
        raise FeedClosed(
            code,
            f"The server closed the live feed (code {code}"
            + (f": {reason}" if isinstance(reason, str) and reason else "")
            + "). Run the command again to resume where it stopped.",
        )

    async def close(self) -> None:
        await self._ws.close()


def _unreachable(base_url: str, exc: BaseException) -> ClientError:
    """A network failure in words a person can act on: never a library's exception name."""
    return ClientError(
        "server_unreachable",
        f"Can't reach the Spokes server at {base_url}: {_why_unreachable(exc)}. Check the "
        "address (`spokes whoami` shows the one this home uses), that the server is running "
        "and that this device is online, then run the command again.",
    )


def _why_unreachable(exc: BaseException) -> str:
    # aiohttp wraps the OS's error (os_error, certificate_error); http.client raises it.
    seen = [exc, getattr(exc, "os_error", None), getattr(exc, "certificate_error", None)]
    seen += [exc.__cause__, exc.__context__]
    for error in seen:
        if isinstance(error, ssl.SSLCertVerificationError | ssl.CertificateError):
            return "its TLS certificate does not verify for that address"
        if isinstance(error, ssl.SSLError):
            return "the TLS connection failed (check http:// or https://)"
        if isinstance(error, socket.gaierror):
            return "that host name is not found"
        if isinstance(error, ConnectionRefusedError):
            return "nothing is listening at that address and port"
        if isinstance(error, TimeoutError):
            return f"no answer within {TIMEOUT_SECONDS} s"
        if isinstance(error, ConnectionError):
            return "the connection broke off before the answer came"
        if isinstance(error, OSError) and error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "there is no route to it from this device"
    return "the connection failed"


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _not_spokes(base_url: str, status: int) -> ClientError:
    return ClientError(
        "bad_response",
        f"{base_url} answered HTTP {status} without the JSON a Spokes server sends. "
        "Check that --server points at a Spokes server.",
    )


def _server_error(base_url: str, status: int, data: Any) -> ClientError:
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        if isinstance(code, str) and isinstance(message, str):
            return ServerError(status, code, message)
    return _not_spokes(base_url, status)
