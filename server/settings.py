"""Server configuration: one frozen :class:`Settings`, built from CLI arguments and
``SPOKES_*`` environment variables (arguments win).

Rule: nothing else in the server reads the environment. The server secret keys
the HMACs that hide client addresses in rate-limit buckets; instances behind
one proxy must share it (set ``SPOKES_SERVER_SECRET``), otherwise each one
generates and keeps its own in ``data_dir/server-secret``.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

SECRET_FILE_NAME = "server-secret"  # noqa: S105 (a file name, not a secret)
SECRET_BYTES = 32


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` hits per fixed window of ``window_s`` seconds."""

    count: int
    window_s: int


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message says which."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the server is configured with."""

    server_secret: bytes = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    database_url: str | None = field(default=None, repr=False)
    session_ttl: timedelta = timedelta(days=30)
    challenge_ttl: timedelta = timedelta(minutes=2)
    # The largest statement (crypto/statements.py MAX_BODY_BYTES, 192 KiB: a
    # split's create event under the widest policy), base64 in JSON, must fit.
    max_body_bytes: int = 320 * 1024
    # Connections the kernel queues before the server accepts them (capped by
    # net.core.somaxconn). aiohttp's 128 overflowed under a burst of 2,000
    # socket connects (issue 12); SPOKES_LISTEN_BACKLOG sets it.
    listen_backlog: int = 4096
    # Behind a reverse proxy every request comes from the proxy; when set, the
    # client address is the last hop of X-Forwarded-For (the one our proxy added).
    trust_forwarded_for: bool = False
    # Check message signatures in a helper process, on another core than the
    # event loop (SPOKES_SIGNATURE_HELPER=0 checks them in-process).
    signature_helper: bool = True
    rate_redeem_per_source: RateLimit = RateLimit(10, 3600)
    rate_redeem_per_lookup: RateLimit = RateLimit(5, 3600)
    rate_invite_fetch_per_source: RateLimit = RateLimit(30, 3600)
    rate_login_per_source: RateLimit = RateLimit(60, 600)
    rate_login_per_member: RateLimit = RateLimit(20, 600)

    def __post_init__(self) -> None:
        if len(self.server_secret) < SECRET_BYTES:
            raise SettingsError(f"the server secret must be at least {SECRET_BYTES} bytes")
        if self.session_ttl <= timedelta(0) or self.challenge_ttl <= timedelta(0):
            raise SettingsError("session and challenge lifetimes must be positive")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port {self.port} is out of range 0-65535")
        for name, value in self.rate_limits().items():
            if value.count < 1 or value.window_s < 1:
                raise SettingsError(f"{name} needs a count and window of at least 1")

    def rate_limits(self) -> dict[str, RateLimit]:
        """Every configured rate limit by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("rate_")}

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (tests use this for fast limits)."""
        return replace(self, **changes)


def load_settings(
    *,
    host: str | None = None,
    port: int | None = None,
    data_dir: Path | None = None,
    database_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from explicit arguments, then ``SPOKES_*`` variables, then defaults.

    Reads or creates the server secret, so ``data_dir`` is created if needed.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    values["host"] = host or env.get("SPOKES_HOST") or "127.0.0.1"
    values["port"] = port if port is not None else _env_int(env, "SPOKES_PORT", 8080)
    values["data_dir"] = data_dir or Path(env.get("SPOKES_DATA_DIR") or "data")
    values["database_url"] = database_url or env.get("SPOKES_DATABASE_URL") or None
    if env.get("SPOKES_SESSION_TTL"):  # seconds
        values["session_ttl"] = timedelta(seconds=_env_int(env, "SPOKES_SESSION_TTL", 0))
    if env.get("SPOKES_CHALLENGE_TTL"):  # seconds
        values["challenge_ttl"] = timedelta(seconds=_env_int(env, "SPOKES_CHALLENGE_TTL", 0))
    values["listen_backlog"] = _env_int(env, "SPOKES_LISTEN_BACKLOG", Settings.listen_backlog)
    if not 1 <= values["listen_backlog"] <= 65535:
        raise SettingsError("SPOKES_LISTEN_BACKLOG must be between 1 and 65535")
    values["trust_forwarded_for"] = env.get("SPOKES_TRUST_FORWARDED_FOR", "") in ("1", "true")
    values["signature_helper"] = env.get("SPOKES_SIGNATURE_HELPER", "1") not in ("0", "false")
    for f in fields(Settings):
        if f.name.startswith("rate_"):
            variable = "SPOKES_" + f.name.upper()  # e.g. SPOKES_RATE_LOGIN_PER_SOURCE=60/600
            if variable in env:
                values[f.name] = _parse_rate(variable, env[variable])
    values["server_secret"] = load_server_secret(values["data_dir"], env)
    return Settings(**values)


def load_server_secret(data_dir: Path, env: Mapping[str, str]) -> bytes:
    """``SPOKES_SERVER_SECRET`` (hex) if set, else ``data_dir/server-secret``.

    The file is created on first start with mode 0600; an existing file that
    others can read is refused rather than silently used.
    """
    if env.get("SPOKES_SERVER_SECRET"):
        try:
            return bytes.fromhex(env["SPOKES_SERVER_SECRET"])
        except ValueError:
            raise SettingsError("SPOKES_SERVER_SECRET must be hex") from None
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE_NAME
    try:
        # O_EXCL: two instances starting at once cannot both write a secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret_file(path)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(SECRET_BYTES) + "\n")
    return _read_secret_file(path)


def _read_secret_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(f"{path} is readable by other users; run: chmod 600 {path}")
    try:
        return bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise SettingsError(f"{path} must hold the secret as hex") from None


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None


def _parse_rate(name: str, raw: str) -> RateLimit:
    count, sep, window = raw.partition("/")
    try:
        if not sep:
            raise ValueError
        return RateLimit(int(count), int(window))
    except ValueError:
        raise SettingsError(f"{name} must look like COUNT/WINDOW_SECONDS, e.g. 10/3600") from None
