"""Server configuration: one frozen :class:`Settings`, built from CLI arguments and
``SPOKES_*`` environment variables (arguments win).

Rule: nothing else in the server reads the environment. The server secret keys
the HMACs that hide client addresses in rate-limit buckets; instances behind
one proxy must share it (set ``SPOKES_SERVER_SECRET``), otherwise each one
generates and keeps its own in ``data_dir/server-secret``.

Mail notices are on when the server has both a mail key (``SPOKES_MAIL_KEY``,
32 bytes as hex or base64, or a key file) and a mail server
(``--smtp-host``). The key seals members' addresses and is never written to
the database; every instance must have the same one.

Metrics (``--metrics-port``, ``SPOKES_METRICS_PORT``) are off unless a port is
given, and then served on that port of their own, on loopback unless
``--metrics-host`` says otherwise: never on the API port, so a reverse proxy
in front of the API cannot expose them by mistake. ``--log-format json``
(``SPOKES_LOG_FORMAT``) writes each log line as one JSON object.
"""

from __future__ import annotations

import base64
import binascii
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
MAIL_KEY_BYTES = 32
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` hits per fixed window of ``window_s`` seconds."""

    count: int
    window_s: int


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message says which."""


@dataclass(frozen=True, kw_only=True)
class SmtpSettings:
    """The mail server notices are handed to (``--smtp-*``, ``SPOKES_SMTP_*``)."""

    host: str
    port: int
    sender: str  # the From address, --smtp-from
    user: str | None = None
    password: str | None = field(default=None, repr=False)  # SPOKES_SMTP_PASSWORD only
    starttls: bool = False  # require STARTTLS before anything is sent
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise SettingsError(f"--smtp-port {self.port} is out of range 1-65535")
        if "@" not in self.sender or any(c.isspace() for c in self.sender):
            raise SettingsError("--smtp-from must be a mail address, e.g. spokes@example.org")
        if self.user is not None and self.password is None:
            raise SettingsError("--smtp-user needs its password in SPOKES_SMTP_PASSWORD")


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
    # The database pool: at most this many connections (SPOKES_DB_POOL_SIZE),
    # and how long a request waits for one when all are busy before it is
    # answered 503 with Retry-After (SPOKES_DB_ACQUIRE_TIMEOUT, seconds).
    db_pool_size: int = 20
    db_acquire_timeout_s: float = 5.0
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
    # WebSocket connects (issue 12, flood safety): per source address before the
    # upgrade, per member after the login (a reconnecting client backs off far below).
    rate_socket_per_source: RateLimit = RateLimit(600, 60)
    rate_socket_per_member: RateLimit = RateLimit(120, 60)
    # Mail notices (issue 11): on with both a key and a mail server.
    mail_key: bytes | None = field(default=None, repr=False)
    smtp: SmtpSettings | None = None
    mail_poll_s: float = 2.0  # how often the mail worker looks for due notices
    mail_retry_s: tuple[float, float] = (30.0, 3600.0)  # first wait after a failure, longest
    # Prometheus metrics (server/metrics.py) on a port of their own; None: off.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: str = "text"  # or "json": one object per line (server/logs.py)

    def __post_init__(self) -> None:
        if len(self.server_secret) < SECRET_BYTES:
            raise SettingsError(f"the server secret must be at least {SECRET_BYTES} bytes")
        if self.mail_key is not None and len(self.mail_key) != MAIL_KEY_BYTES:
            raise SettingsError(f"the mail key must be {MAIL_KEY_BYTES} bytes")
        if self.session_ttl <= timedelta(0) or self.challenge_ttl <= timedelta(0):
            raise SettingsError("session and challenge lifetimes must be positive")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port {self.port} is out of range 0-65535")
        if self.metrics_port is not None:
            if not 0 <= self.metrics_port <= 65535:
                raise SettingsError(f"metrics port {self.metrics_port} is out of range 0-65535")
            if self.metrics_port == self.port != 0:
                raise SettingsError("the metrics port must differ from the API port")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"the log format must be one of {', '.join(LOG_FORMATS)}")
        if not 1 <= self.db_pool_size <= 1000:
            raise SettingsError("the database pool size must be between 1 and 1000")
        if not 0 < self.db_acquire_timeout_s <= 600:
            raise SettingsError("the database acquire timeout must be over 0 and at most 600 s")
        for name, value in self.rate_limits().items():
            if value.count < 1 or value.window_s < 1:
                raise SettingsError(f"{name} needs a count and window of at least 1")

    def mail_off_reason(self) -> str | None:
        """Why mail notices are off (for the log at start), or None when they are on."""
        missing = []
        if self.smtp is None:
            missing.append("no mail server (--smtp-host or SPOKES_SMTP_HOST)")
        if self.mail_key is None:
            missing.append("no mail key (SPOKES_MAIL_KEY, or --mail-key-file)")
        if not missing:
            return None
        return "mail notices are off: " + " and ".join(missing)

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
    smtp_host: str | None = None,
    smtp_port: int | None = None,
    smtp_user: str | None = None,
    smtp_from: str | None = None,
    smtp_starttls: bool | None = None,
    mail_key_file: Path | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
    log_format: str | None = None,
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
    values["db_pool_size"] = _env_int(env, "SPOKES_DB_POOL_SIZE", Settings.db_pool_size)
    values["db_acquire_timeout_s"] = _env_float(
        env, "SPOKES_DB_ACQUIRE_TIMEOUT", Settings.db_acquire_timeout_s
    )
    values["trust_forwarded_for"] = env.get("SPOKES_TRUST_FORWARDED_FOR", "") in ("1", "true")
    values["signature_helper"] = env.get("SPOKES_SIGNATURE_HELPER", "1") not in ("0", "false")
    if metrics_port is None and env.get("SPOKES_METRICS_PORT"):
        metrics_port = _env_int(env, "SPOKES_METRICS_PORT", 0)
    values["metrics_port"] = metrics_port
    values["metrics_host"] = metrics_host or env.get("SPOKES_METRICS_HOST") or "127.0.0.1"
    values["log_format"] = log_format or env.get("SPOKES_LOG_FORMAT") or "text"
    for f in fields(Settings):
        if f.name.startswith("rate_"):
            variable = "SPOKES_" + f.name.upper()  # e.g. SPOKES_RATE_LOGIN_PER_SOURCE=60/600
            if env.get(variable):  # empty counts as unset, as for every other variable
                values[f.name] = _parse_rate(variable, env[variable])
    values["server_secret"] = load_server_secret(values["data_dir"], env)
    values["mail_key"] = load_mail_key(mail_key_file, env)
    values["smtp"] = _smtp_settings(
        env,
        host=smtp_host,
        port=smtp_port,
        user=smtp_user,
        sender=smtp_from,
        starttls=smtp_starttls,
    )
    return Settings(**values)


def _smtp_settings(
    env: Mapping[str, str],
    *,
    host: str | None,
    port: int | None,
    user: str | None,
    sender: str | None,
    starttls: bool | None,
) -> SmtpSettings | None:
    """The mail server from ``--smtp-*`` arguments, then ``SPOKES_SMTP_*``; None without a host."""
    host = host or env.get("SPOKES_SMTP_HOST") or None
    if host is None:
        return None
    if starttls is None:
        starttls = env.get("SPOKES_SMTP_STARTTLS", "") in ("1", "true")
    if port is None:
        port = _env_int(env, "SPOKES_SMTP_PORT", 587 if starttls else 25)
    sender = sender or env.get("SPOKES_SMTP_FROM") or None
    if sender is None:
        raise SettingsError("--smtp-host needs --smtp-from (or SPOKES_SMTP_FROM): the From address")
    return SmtpSettings(
        host=host,
        port=port,
        sender=sender,
        user=user or env.get("SPOKES_SMTP_USER") or None,
        password=env.get("SPOKES_SMTP_PASSWORD") or None,
        starttls=starttls,
    )


def load_mail_key(path: Path | None, env: Mapping[str, str]) -> bytes | None:
    """The key that seals members' mail addresses, or None (mail notices are off).

    ``--mail-key-file`` wins; otherwise ``SPOKES_MAIL_KEY_FILE`` or
    ``SPOKES_MAIL_KEY``, not both (two keys would seal under one and open
    under the other). A key is 32 bytes, as hex or base64; a key file may
    also hold the 32 bytes raw, and must not be readable by other users.
    """
    if path is None and env.get("SPOKES_MAIL_KEY_FILE"):
        if env.get("SPOKES_MAIL_KEY"):
            raise SettingsError("set SPOKES_MAIL_KEY or SPOKES_MAIL_KEY_FILE, not both")
        path = Path(env["SPOKES_MAIL_KEY_FILE"])
    if path is not None:
        try:
            mode = path.stat().st_mode
            raw = path.read_bytes()
        except OSError as exc:
            raise SettingsError(f"cannot read the mail key file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SettingsError(f"{path} is readable by other users; run: chmod 600 {path}")
        if len(raw) == MAIL_KEY_BYTES:
            return raw
        return _mail_key(raw.decode("ascii", errors="replace").strip(), str(path))
    if env.get("SPOKES_MAIL_KEY"):
        return _mail_key(env["SPOKES_MAIL_KEY"].strip(), "SPOKES_MAIL_KEY")
    return None


def _mail_key(text: str, where: str) -> bytes:
    key: bytes | None = None
    if len(text) == 2 * MAIL_KEY_BYTES:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = None
    if key is None:
        try:
            key = base64.b64decode(
                text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
            )
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != MAIL_KEY_BYTES:
        raise SettingsError(
            f"{where} must hold a {MAIL_KEY_BYTES}-byte key as hex or base64 "
            "(make one with: openssl rand -hex 32)"
        )
    return key


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


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)  # NaN and infinities are refused with the range, in Settings
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}") from None


def _parse_rate(name: str, raw: str) -> RateLimit:
    count, sep, window = raw.partition("/")
    try:
        if not sep:
            raise ValueError
        return RateLimit(int(count), int(window))
    except ValueError:
        raise SettingsError(f"{name} must look like COUNT/WINDOW_SECONDS, e.g. 10/3600") from None
