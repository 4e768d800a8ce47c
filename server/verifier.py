"""Message signatures checked in a helper process, off the event loop.

An Ed25519 check is the largest piece of the server's work per message, and
the event loop is one thread: a helper process lets it run on another core.
The helper runs crypto.messages.verify_message itself, on exactly the bytes
the request carried, so nothing about the check changes but where it runs.

The rule: a batch sent to the helper gets exactly one answer, in order; if
the helper is gone (or never started), the check runs in this process
instead. No thread touches the event loop: requests are written to a pipe,
answers are read by a loop reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import pickle  # noqa: S403 (only between this process and the helper it started)
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from crypto.errors import CryptoError, InvalidSignature
from crypto.keys import IdentityPublicKey
from crypto.messages import SealedMessage, verify_message
from server.errors import ErrorCode

log = logging.getLogger("spokes.verifier")

START_TIMEOUT_S = 30.0

# What a batch asks: each message with its sender's raw identity key. What it
# gets back: for each, None (verified) or (error code, reason).
Request = list[tuple[SealedMessage, bytes]]
Answer = list[tuple[ErrorCode, str] | None]


def verify_batch(signed: Sequence[tuple[SealedMessage, bytes]]) -> Answer:
    """The check itself, wherever it runs."""
    answers: Answer = []
    for message, raw_key in signed:
        try:
            verify_message(message, _key(raw_key))
        except InvalidSignature as exc:
            answers.append((ErrorCode.INVALID_SIGNATURE, f"signature does not verify: {exc}"))
        except CryptoError as exc:
            answers.append((ErrorCode.INVALID_STATEMENT, str(exc)))
        else:
            answers.append(None)
    return answers


_KEYS: dict[bytes, IdentityPublicKey] = {}
KEY_CACHE_SIZE = 100_000


def _key(raw: bytes) -> IdentityPublicKey:
    """A parsed key, once per key: its bytes fully determine it."""
    key = _KEYS.get(raw)
    if key is None:
        if len(_KEYS) >= KEY_CACHE_SIZE:
            _KEYS.clear()
        key = _KEYS[raw] = IdentityPublicKey(raw)
    return key


def _helper_main(conn: Connection) -> None:
    """The helper process: answer batches until the pipe closes."""
    with contextlib.suppress(EOFError, OSError, KeyboardInterrupt):
        while True:
            request: Request = pickle.loads(conn.recv_bytes())  # noqa: S301 (our parent)
            conn.send_bytes(pickle.dumps(verify_batch(request)))


class Verifier:
    """The helper process and the batches waiting for its answers."""

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        self._waiting: deque[asyncio.Future[Answer]] = deque()

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_helper_main, args=(theirs,), daemon=True)
        try:
            await asyncio.wait_for(asyncio.to_thread(process.start), START_TIMEOUT_S)
        except Exception as exc:  # whatever stops it, the server still checks signatures
            log.warning(
                "signature helper did not start (%s); checking in-process", type(exc).__name__
            )
            ours.close()
            return
        theirs.close()
        self._conn, self._process = ours, process
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_answer)

    @property
    def running(self) -> bool:
        return self._conn is not None

    async def verify(self, signed: Request) -> Answer:
        """One answer per message, in order (in the helper if it is running)."""
        if not signed:
            return []
        if self._conn is None:
            return verify_batch(signed)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        try:
            self._conn.send_bytes(pickle.dumps(signed))
        except OSError:
            self._lost()
            return verify_batch(signed)
        self._waiting.append(future)
        try:
            return await future
        except ConnectionError:
            return verify_batch(signed)  # the helper died with this batch: check it here

    def _on_answer(self) -> None:
        if self._conn is None:
            return
        try:
            answer: Answer = pickle.loads(self._conn.recv_bytes())  # noqa: S301 (our helper)
        except (EOFError, OSError):
            self._lost()
            return
        future = self._waiting.popleft()
        if not future.done():
            future.set_result(answer)

    def _lost(self) -> None:
        log.warning("signature helper exited; checking in-process from now on")
        self._disconnect("signature helper exited")

    def _disconnect(self, why: str) -> None:
        """Close the pipe; every batch still waiting is checked in-process instead."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._conn.fileno())
            self._conn.close()
        self._conn = None
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(why))

    async def stop(self) -> None:
        self._disconnect("shutting down")
        if self._process is not None:
            process, self._process = self._process, None
            await asyncio.to_thread(process.join, 5)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
