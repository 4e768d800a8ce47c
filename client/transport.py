"""HTTP to the Spokes server: the only module that uses aiohttp.

The rule it keeps: every way a request can fail becomes a ClientError. An
error the server sent keeps its status and machine code (ServerError); a
network failure becomes "server_unreachable"; anything that is not the
JSON the API promises becomes "bad_response".
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import aiohttp

from client.api import Request
from client.errors import ClientError, ServerError

TIMEOUT_SECONDS = 30


class Transport:
    """Sends API requests to one server; open lazily, close with `close()`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def send(self, request: Request, token: str | None = None) -> Any:
        """Send `request` and return the decoded JSON body of a 2xx answer."""
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = self.base_url + request.path
        try:
            session = self._open()
            async with session.request(
                request.method, url, json=request.body, headers=headers
            ) as response:
                text = await response.text()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _unreachable(self.base_url, exc) from exc
        data = _decode(text)
        if 200 <= status < 300:
            if data is None:
                raise _not_spokes(self.base_url, status)
            return data
        raise _server_error(self.base_url, status, data)

    async def open_feed(self, path: str, token: str) -> Feed:
        """Open the live WebSocket at `path`, logged in with `token`."""
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
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
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
        try:
            await self._ws.send_str(json.dumps(message))
        except (aiohttp.ClientError, OSError, ConnectionError) as exc:
            raise _unreachable(self._base_url, exc) from exc

    async def receive(self, wait_s: float) -> dict[str, Any] | None:
        """The next JSON object, or None if nothing came within `wait_s` seconds.

        A batch frame ({"type": "batch", "events": [...]}) comes out as its
        events, one per call, in order.
        """
        if self._pending:
            return self._pending.popleft()
        try:
            message = await self._ws.receive(timeout=wait_s)
        except TimeoutError:
            return None
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
        raise ClientError(
            "feed_closed",
            f"The server closed the live feed ({self._ws.close_code}). Run the command again "
            "to resume where it stopped.",
        )

    async def close(self) -> None:
        await self._ws.close()


def _unreachable(base_url: str, exc: BaseException) -> ClientError:
    return ClientError(
        "server_unreachable",
        f"Could not reach the Spokes server at {base_url} ({type(exc).__name__}). "
        "Check the address and that the server is running, then try again.",
    )


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
