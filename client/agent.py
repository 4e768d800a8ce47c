"""The unlock agent: one home's keystore key, held in memory for a while.

The rule it keeps: the key is served only over a unix socket inside the home
folder (`agent.sock`, mode 0600, in a folder of mode 0700), and only to a
peer whose kernel-reported uid (SO_PEERCRED) is the agent's own; anyone
else is answered "refused" and learns nothing. The key lives in one
bytearray that is overwritten with zeros on `lock`, when its time is up, on
SIGTERM/SIGINT/SIGHUP, and when its socket file is removed or replaced;
the socket file goes with it.

`spokes unlock` derives the key (client/cli/setup.py) and runs
`python -m client.agent --home HOME --seconds N`, writing the key to its
standard input. The agent binds its socket, answers `ready PID UNTIL` on
standard output and detaches (a new session, reparented, standard streams
on /dev/null), so that it outlives the command that started it.

The client side (`ask_key`, `stop`) imports only the standard library and
crypto.keystore's two value classes: every command asks before anything
else, and an answer costs a millisecond. What the agent does not protect
against is written in docs/THREAT_MODEL.md: while unlocked, any process
running as the same user can use the keys.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from crypto.keystore import KdfParams, KeystoreKey

SOCKET_FILE = "agent.sock"
# The request a client sends, one line; the answer's first byte says what it is.
ASK_KEY, ASK_LOCK = b"key\n", b"lock\n"
KEY, LOCKED, REFUSED = b"K", b"L", b"R"
# time_cost, memory_kib, parallelism, expires_at (unix seconds), salt, key.
_KEY_REPLY = struct.Struct(">IIIQ16s32s")
_KEY_LEN = 12 + 16 + 32  # what `unlock` writes to the agent's stdin: costs, salt, key
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
CLIENT_TIMEOUT_SECONDS = 2.0
CHECK_SECONDS = 1.0  # how often the agent looks whether its socket file is still its own
MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


class AgentError(Exception):
    """The agent could not be started (the message says why)."""


@dataclass(frozen=True)
class Started:
    """An agent now serving: its process id and when it forgets the key (unix seconds)."""

    pid: int
    expires_at: int


@dataclass(frozen=True)
class Unlocked:
    """What an agent answered: the key, and when it forgets it (unix seconds)."""

    key: KeystoreKey
    expires_at: int


def socket_path(home: Path) -> Path:
    return home / SOCKET_FILE


# The client side: what every command asks first.


def ask_key(home: Path) -> Unlocked | None:
    """The key this home's agent holds, or None (no agent, a stale socket, refused)."""
    try:
        reply = _request(socket_path(home), ASK_KEY, _KEY_REPLY.size + 1)
    except OSError:
        return None  # no socket, nobody listening (the agent died), or not ours to reach
    if len(reply) != _KEY_REPLY.size + 1 or reply[:1] != KEY:
        return None
    time_cost, memory_kib, parallelism, expires_at, salt, key = _KEY_REPLY.unpack(reply[1:])
    try:
        params = KdfParams(time_cost, memory_kib, parallelism)
    except ValueError:
        return None
    return Unlocked(KeystoreKey(params, salt, key), expires_at)


def stop(home: Path) -> str:
    """Tell this home's agent to forget the key and exit.

    Returns "locked" (an agent was running and is gone), "none" (no socket),
    "stale" (a socket nobody listened on; it was removed), "refused" (the
    agent is another user's) or "unreachable" (it did not answer in time).
    """
    path = socket_path(home)
    try:
        reply = _request(path, ASK_LOCK, 1)
    except (FileNotFoundError, NotADirectoryError):
        return "none"
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
        return "stale"
    except OSError:
        return "unreachable"
    if reply == LOCKED:
        _wait_gone(path)
        return "locked"
    return "refused"


def start(home: Path, key: KeystoreKey, seconds: int) -> Started:
    """Start a detached agent serving `key` for `seconds`; raise AgentError if it can't.

    The key goes to the agent on its standard input, never on its command
    line or in its environment (both readable in /proc); so does not the
    passphrase, which is left out of the environment the agent inherits.
    """
    if not hasattr(socket, "SO_PEERCRED"):
        raise AgentError("this system can't tell which user is at a socket's other end")
    params = key.params
    given = bytearray(struct.pack(">III", params.time_cost, params.memory_kib, params.parallelism))
    given += key.salt + key.key
    env = {k: v for k, v in os.environ.items() if k != "SPOKES_PASSPHRASE"}
    try:
        process = subprocess.run(  # noqa: S603 - this interpreter, this package's module
            [sys.executable, "-m", "client.agent", "--home", str(home), "--seconds", str(seconds)],
            input=bytes(given),
            capture_output=True,
            env=env,
            cwd=Path(__file__).resolve().parents[1],
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentError(f"the agent did not start ({exc})") from None
    finally:
        wipe(given)
    words = process.stdout.decode("utf-8", "replace").split(maxsplit=1)
    if process.returncode == 0 and words and words[0] == "ready":
        pid, expires_at = words[1].split()
        return Started(int(pid), int(expires_at))
    said = words[1].strip() if words and words[0] == "error" else None
    detail = process.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
    raise AgentError(said or f"the agent did not start ({' '.join(detail) or process.returncode})")


def _request(path: Path, request: bytes, size: int) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(CLIENT_TIMEOUT_SECONDS)
        conn.connect(str(path))
        conn.sendall(request)
        reply = b""
        while len(reply) < size:
            chunk = conn.recv(size - len(reply))
            if not chunk:
                break
            reply += chunk
        return reply


def _wait_gone(path: Path) -> None:
    # The agent removes its socket as it exits; a following `unlock` binds anew.
    deadline = time.monotonic() + CLIENT_TIMEOUT_SECONDS
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


# The agent side.


def peer_allowed(conn: socket.socket, uid: int) -> bool:
    """Whether the process at the other end of `conn` runs as `uid` (kernel-reported)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _, peer_uid, _ = _PEERCRED.unpack(raw)
    return bool(peer_uid == uid)


def wipe(buffer: bytearray) -> None:
    """Overwrite `buffer` with zeros in place (same length, so no copy is left behind)."""
    buffer[:] = bytes(len(buffer))


def bind(home: Path) -> socket.socket:
    """A listening socket at HOME/agent.sock, mode 0600; a stale socket is replaced.

    Raises AgentError if an agent already answers there, or the path can't hold a socket.
    """
    path = socket_path(home)
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise AgentError(
            f"the home folder's path is too long for a unix socket ({path}); use a shorter --home"
        )
    if path.exists() or path.is_symlink():
        try:
            _request(path, b"", 0)
        except ConnectionRefusedError:
            path.unlink()  # the agent that made it died without removing it
        except OSError as exc:
            raise AgentError(f"{path} is in the way ({exc}); remove it") from None
        else:
            raise AgentError("an agent is already running for this home")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The mode is set by the umask at bind, so the socket is never reachable
    # by others, not even between bind and chmod.
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener.listen(8)
    return listener


class Agent:
    """Serves one key over a bound socket until it is locked, times out or is stopped."""

    def __init__(self, listener: socket.socket, path: Path, key: bytearray, seconds: float) -> None:
        self.listener = listener
        self.path = path
        self.key = key  # time_cost, memory_kib, parallelism (>III), salt, key
        self.deadline = _clock() + seconds
        self.expires_at = int(time.time() + seconds)
        self.uid = os.getuid()
        self.inode = os.stat(path).st_ino

    def serve(self) -> None:
        try:
            while self._still_ours():
                remaining = self.deadline - _clock()
                if remaining <= 0:
                    return
                readable, _, _ = select.select(
                    [self.listener], [], [], min(remaining, CHECK_SECONDS)
                )
                if readable and not self._answer_one():
                    return
        finally:
            self.close()

    def close(self) -> None:
        wipe(self.key)
        if self._still_ours():
            self.path.unlink(missing_ok=True)
        self.listener.close()

    def _still_ours(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def _answer_one(self) -> bool:
        """Answer one connection; False when it asked to lock."""
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return True
        with conn:
            try:
                conn.settimeout(CLIENT_TIMEOUT_SECONDS)
                if not peer_allowed(conn, self.uid):
                    conn.sendall(REFUSED)
                    return True
                request = conn.recv(16)
                if request == ASK_LOCK:
                    wipe(self.key)
                    conn.sendall(LOCKED)
                    return False
                if request == ASK_KEY:
                    self._send_key(conn)
            except OSError:
                pass  # a client that went away or stalled gets nothing; the agent goes on
        return True

    def _send_key(self, conn: socket.socket) -> None:
        reply = bytearray(1 + _KEY_REPLY.size)
        reply[0:1] = KEY
        reply[1:13] = self.key[0:12]
        struct.pack_into(">Q", reply, 13, self.expires_at)
        reply[21:] = self.key[12:]
        try:
            conn.sendall(reply)
        finally:
            wipe(reply)


def _clock() -> float:
    # CLOCK_BOOTTIME goes on while the computer sleeps (CLOCK_MONOTONIC does
    # not): a laptop closed for two hours wakes up locked.
    if hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.monotonic()


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # unwinds into Agent.serve's finally: wipe, remove the socket


def _read_key(stream: int) -> bytearray:
    key = bytearray(_KEY_LEN)
    view = memoryview(key)
    got = 0
    while got < _KEY_LEN:
        n = os.readv(stream, [view[got:]])
        if n == 0:
            wipe(key)
            raise AgentError("no key was given on standard input")
        got += n
    return key


def _detach() -> None:
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _harden() -> None:
    # Best effort: no core file with the key in it, and no ptrace by other
    # processes of this user that are not root (PR_SET_DUMPABLE = 0).
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.agent")
    parser.add_argument("--home", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    _harden()
    home = Path(args.home)
    try:
        key = _read_key(sys.stdin.fileno())
        listener = bind(home)
    except AgentError as exc:
        print(f"error {exc}", flush=True)
        return 1
    path = socket_path(home)
    agent = Agent(listener, path, key, args.seconds)
    # Signals before the fork, so none can arrive between it and serve().
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    pid = os.fork()
    if pid:
        # The parent only reports; the child serves. Its copies are dropped unused.
        wipe(key)
        listener.close()
        print(f"ready {pid} {agent.expires_at}", flush=True)
        os._exit(0)
    _detach()
    agent.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
