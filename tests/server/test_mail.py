"""Mail notices over the real API, delivered to a real SMTP server on loopback (aiosmtpd).

Members opt in with PUT /v1/notify; what they did goes through the real
services (redeeming an invite, opening a motion, sending messages), the
server's own mail worker hands the notices to aiosmtpd, and every mail that
arrives is searched for anything it must never carry.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from crypto.elections import make_elect_motion
from crypto.encoding import b32e, b64e
from crypto.exclusion import make_expel_motion
from crypto.network import Policy
from server.mail import TEXTS, MailKeyError, NoticeKind, open_address, seal_address
from server.settings import Settings, SettingsError, SmtpSettings, load_settings
from tests.conftest import RunningServer, ServerFactory
from tests.server.actors import Actor, bring_in
from tests.server.group_actors import GroupView

FROM = "notices@spokes.example"
SUBJECTS = {kind: subject for kind, (subject, _) in TEXTS.items()}
WAIT_S = 10.0


# --- A real SMTP server on loopback ------------------------------------------


@dataclass
class Received:
    to: list[str]
    raw: bytes

    @property
    def message(self) -> Message:
        return message_from_bytes(self.raw)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])


@dataclass
class Inbox:
    """Everything aiosmtpd accepted (its handler runs in aiosmtpd's own thread)."""

    mails: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.mails.append(Received(list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.mails)

    def of(self, address: str) -> list[str]:
        return sorted(m.subject for m in self.snapshot() if m.to == [address])

    async def wait_for(self, count: int, within_s: float = WAIT_S) -> list[Received]:
        """At least `count` mails, or fail after `within_s` seconds."""
        deadline = time.monotonic() + within_s
        while len(self.snapshot()) < count:
            assert time.monotonic() < deadline, f"{len(self.snapshot())} mails, not {count}"
            await asyncio.sleep(0.02)
        return self.snapshot()


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int
    controller: Controller | None = None

    async def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        await asyncio.to_thread(self.controller.start)

    async def stop(self) -> None:
        if self.controller is not None:
            await asyncio.to_thread(self.controller.stop)
            self.controller = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    server = SmtpServer(Inbox(), free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def mail_settings(settings: Settings, port: int) -> Settings:
    """Mail on, sending to the loopback SMTP server; polls and retries fast for the test."""
    return settings.with_changes(
        mail_key=os.urandom(32),
        smtp=SmtpSettings(host="127.0.0.1", port=port, sender=FROM, timeout_s=2.0),
        mail_poll_s=0.05,
        mail_retry_s=(0.05, 0.3),
    )


@pytest.fixture
async def mail_server(
    server_factory: ServerFactory, settings: Settings, smtp: SmtpServer
) -> RunningServer:
    return await server_factory(settings=mail_settings(settings, smtp.port))


# --- Members -------------------------------------------------------------------


def address_of(actor: Actor) -> str:
    return f"member-{id(actor)}@mail.example"


async def opt_in(actor: Actor) -> str:
    address = address_of(actor)
    reply = await actor.call("PUT", "/v1/notify", {"address": address})
    assert (reply.status, reply.body) == (200, {"status": "on"}), reply.body
    return address


def encodings(raw: bytes) -> list[str]:
    """Every way the project writes bytes as text: b32 (ids), hex, base64 (wire)."""
    return [
        b32e(raw),
        raw.hex(),
        b64e(raw),
        base64.b64encode(raw).decode().rstrip("="),
        base64.b32encode(raw).decode().rstrip("="),
    ]


def assert_content_free(mails: Iterable[Received], secrets: Iterable[str]) -> None:
    """No mail carries any of `secrets` (compared without case), nor any address
    but its recipient's and the From address."""
    for mail in mails:
        # The raw mail and its body decoded (a transfer encoding could hide text).
        body = mail.message.get_payload(decode=True)
        assert isinstance(body, bytes)
        text = (mail.raw + b"\n" + body).decode("utf-8", errors="replace").lower()
        for secret in secrets:
            assert secret.lower() not in text, f"a mail carries {secret!r}"
        assert mail.message["From"] == FROM and mail.message["To"] == mail.to[0]
        assert mail.subject in SUBJECTS.values()


async def rows(pool: Any, sql: str) -> list[Any]:
    async with pool.acquire() as conn:
        return list(await conn.fetch(sql))


# --- Tests ---------------------------------------------------------------------


async def test_opted_in_members_get_the_notices_of_what_happened_and_nothing_more(
    mail_server: RunningServer, smtp: SmtpServer, http: Any, pool: Any
) -> None:
    founder = Actor(http, mail_server.url)
    assert (await founder.found(Policy(cell_min=2, vouches=1))).status == 201
    f_mail = await opt_in(founder)
    view = GroupView(founder, founder.cell or b"")
    b, c, d = members = [Actor(http, mail_server.url) for _ in range(3)]
    for n, newcomer in enumerate(members):
        await bring_in(founder, newcomer, *members[:n])
        assert (await view.add(newcomer, await founder.admission_of(newcomer))).status == 201
    # B and C opt in; D never does.
    b_mail, c_mail = await opt_in(b), await opt_in(c)
    await view.commit_epoch()
    secret_texts = ["meet at the old mill at nine", "bring the banner"]
    for text in secret_texts:
        assert (await view.send(text)).status == 201
    state = await view.refresh()
    motion = make_elect_motion(b.key, b.network, state, founder.id, b.now())
    opened = await b.call(
        "POST", f"/v1/groups/{b32e(view.group)}/motions", {"motion": motion.statement.to_wire()}
    )
    assert opened.status == 201, opened.body

    expected = {
        f_mail: sorted([SUBJECTS[NoticeKind.INVITE_REDEEMED]] * 3 + [SUBJECTS[NoticeKind.MOTION]]),
        # Two messages, one activity notice; the opener of a motion is not asked to sign it.
        b_mail: [SUBJECTS[NoticeKind.ACTIVITY]],
        c_mail: sorted([SUBJECTS[NoticeKind.ACTIVITY], SUBJECTS[NoticeKind.MOTION]]),
    }
    mails = await smtp.inbox.wait_for(sum(len(v) for v in expected.values()))
    await asyncio.sleep(0.3)  # several polls: nothing more comes
    assert {address: smtp.inbox.of(address) for address in expected} == expected
    assert len(smtp.inbox.snapshot()) == len(mails)
    assert not [m for m in mails if m.to == [address_of(d)]]

    secrets = [*secret_texts, motion.id.hex()]
    for raw in (
        *(actor.id for actor in (founder, b, c, d)),
        view.group,
        founder.network,
        motion.id,
    ):
        secrets += encodings(raw)
    assert_content_free(mails, secrets)
    for mail in mails:  # nor another member's address
        others = {f_mail, b_mail, c_mail, address_of(d)} - {mail.to[0]}
        body = mail.raw.decode().lower()
        assert not [other for other in others if other in body]
    assert await rows(pool, "SELECT * FROM mail_notices") == []


async def test_a_mail_server_that_is_down_fails_no_request_and_loses_no_notice(
    server_factory: ServerFactory, settings: Settings, smtp: SmtpServer, http: Any, pool: Any
) -> None:
    await smtp.stop()
    # Two instances on one database, each with its own mail worker.
    configured = mail_settings(settings, smtp.port)
    one, two = await server_factory(settings=configured), await server_factory(settings=configured)
    founder = Actor(http, one.url)
    assert (await founder.found(Policy(cell_min=2, vouches=1))).status == 201
    address = await opt_in(founder)
    started = time.monotonic()
    for n in range(6):
        newcomer = Actor(http, (one, two)[n % 2].url)
        code, reply = await founder.invite()
        assert reply.status == 201
        assert (await newcomer.join(code, founder)).status == 201
    assert time.monotonic() - started < 5  # no request waited on the mail server
    # The workers tried (and failed) while the requests went on.
    deadline = time.monotonic() + WAIT_S
    while not await rows(pool, "SELECT 1 FROM mail_notices WHERE attempts >= 2 LIMIT 1"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert len(await rows(pool, "SELECT * FROM mail_notices")) == 6
    assert smtp.inbox.snapshot() == []

    await smtp.start()
    mails = await smtp.inbox.wait_for(6)
    await asyncio.sleep(0.5)  # both workers poll several times more: nothing is sent twice
    assert len(smtp.inbox.snapshot()) == 6
    assert {tuple(m.to) for m in mails} == {(address,)}
    assert {m.subject for m in mails} == {SUBJECTS[NoticeKind.INVITE_REDEEMED]}
    assert len({m.message["Message-ID"] for m in mails}) == 6
    assert await rows(pool, "SELECT * FROM mail_notices") == []


async def test_the_address_is_stored_sealed_and_never_logged(
    mail_server: RunningServer, http: Any, pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    founder = Actor(http, mail_server.url)
    assert (await founder.found()).status == 201
    address = await opt_in(founder)
    (row,) = await rows(pool, "SELECT member_id, sealed FROM mail_addresses")
    key = mail_server.settings.mail_key
    assert key is not None
    assert open_address(key, founder.id, bytes(row["sealed"])) == address
    # Every table, every row, as text and as bytes: the address is nowhere.
    tables = await rows(
        pool, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    for table in (t["table_name"] for t in tables):
        for found in await rows(pool, f"SELECT t::text AS text FROM {table} t"):
            assert address not in found["text"]
            assert address.encode().hex() not in found["text"]
    # Setting it again seals it afresh (a random nonce); clearing deletes it.
    await opt_in(founder)
    (again,) = await rows(pool, "SELECT sealed FROM mail_addresses")
    assert bytes(again["sealed"]) != bytes(row["sealed"])
    cleared = await founder.call("DELETE", "/v1/notify")
    assert (cleared.status, cleared.body) == (200, {"status": "off", "cleared": True})
    assert await rows(pool, "SELECT * FROM mail_addresses") == []
    assert (await founder.call("DELETE", "/v1/notify")).body["cleared"] is False
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in [address, *encodings(founder.id)]:
        assert secret not in logged


async def test_a_bad_address_is_refused_and_nothing_is_written(
    mail_server: RunningServer, http: Any, pool: Any
) -> None:
    founder = Actor(http, mail_server.url)
    assert (await founder.found()).status == 201
    bad = [
        "",
        "ann",
        "ann@",
        "@example.org",
        "ann@@example.org",
        "ann@example.org\r\nBcc: everyone@example.org",
        "Ann <ann@example.org>",
        "ann @example.org",
        "änn@example.org",
        ".ann@example.org",
        "ann..b@example.org",
        "ann@-example.org",
        "ann@example..org",
        "a" * 65 + "@example.org",
        "ann@" + "a" * 250 + ".org",
    ]
    for address in bad:
        reply = await founder.call("PUT", "/v1/notify", {"address": address})
        assert (reply.status, reply.code) == (400, "invalid_address"), address
    for body in ({}, {"address": 7}, {"address": "a" * 600}):
        reply = await founder.call("PUT", "/v1/notify", body)
        assert (reply.status, reply.code) == (400, "bad_request"), body
    anonymous = await founder.call("PUT", "/v1/notify", {"address": "ann@x.org"}, auth=False)
    assert (anonymous.status, anonymous.code) == (401, "unauthorized")
    assert await rows(pool, "SELECT * FROM mail_addresses") == []


@pytest.mark.parametrize("configured", ["nothing", "key_only", "smtp_only"])
async def test_without_a_mail_server_and_key_opting_in_is_refused(
    configured: str, server_factory: ServerFactory, settings: Settings, http: Any, pool: Any
) -> None:
    full = mail_settings(settings, free_port())
    partial = {
        "nothing": settings,
        "key_only": full.with_changes(smtp=None),
        "smtp_only": full.with_changes(mail_key=None),
    }[configured]
    assert partial.mail_off_reason() is not None
    server = await server_factory(settings=partial)
    founder = Actor(http, server.url)
    assert (await founder.found()).status == 201
    reply = await founder.call("PUT", "/v1/notify", {"address": "ann@example.org"})
    assert (reply.status, reply.code) == (409, "mail_off")
    assert await rows(pool, "SELECT * FROM mail_addresses") == []


# --- Configuration and sealing, without a server -------------------------------


def test_a_sealed_address_opens_only_for_its_member_under_its_key() -> None:
    key, ann, bob = os.urandom(32), os.urandom(32), os.urandom(32)
    sealed = seal_address(key, ann, "ann@example.org")
    assert open_address(key, ann, sealed) == "ann@example.org"
    assert b"ann@example.org" not in sealed
    for wrong_key, member in ((key, bob), (os.urandom(32), ann)):
        with pytest.raises(MailKeyError):
            open_address(wrong_key, member, sealed)


def test_the_mail_key_and_server_come_from_arguments_and_the_environment(tmp_path: Path) -> None:
    key = os.urandom(32)
    env = {"SPOKES_SERVER_SECRET": os.urandom(32).hex()}
    assert load_settings(data_dir=tmp_path, env=env).mail_off_reason() == (
        "mail notices are off: no mail server (--smtp-host or SPOKES_SMTP_HOST) "
        "and no mail key (SPOKES_MAIL_KEY, or --mail-key-file)"
    )
    for text in (key.hex(), base64.b64encode(key).decode(), b64e(key)):
        loaded = load_settings(data_dir=tmp_path, env={**env, "SPOKES_MAIL_KEY": text})
        assert loaded.mail_key == key
    key_file = tmp_path / "mail.key"
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    assert load_settings(data_dir=tmp_path, mail_key_file=key_file, env=env).mail_key == key
    by_env = {**env, "SPOKES_MAIL_KEY_FILE": str(key_file)}
    assert load_settings(data_dir=tmp_path, env=by_env).mail_key == key
    smtp_env = {
        **env,
        "SPOKES_MAIL_KEY": key.hex(),
        "SPOKES_SMTP_HOST": "mail.example",
        "SPOKES_SMTP_FROM": FROM,
        "SPOKES_SMTP_STARTTLS": "1",
        "SPOKES_SMTP_USER": "spokes",
        "SPOKES_SMTP_PASSWORD": "hunter2-but-longer",
    }
    loaded = load_settings(data_dir=tmp_path, env=smtp_env)
    assert loaded.mail_off_reason() is None and loaded.smtp is not None
    assert (loaded.smtp.port, loaded.smtp.starttls, loaded.smtp.user) == (587, True, "spokes")
    assert "hunter2" not in repr(loaded) and key.hex() not in repr(loaded)
    argued = load_settings(
        data_dir=tmp_path, smtp_host="other.example", smtp_port=2525, env=smtp_env
    )
    assert argued.smtp is not None and (argued.smtp.host, argued.smtp.port) == (
        "other.example",
        2525,
    )


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"SPOKES_MAIL_KEY": "00" * 31}, "SPOKES_MAIL_KEY must hold a 32-byte key"),
        ({"SPOKES_MAIL_KEY": "not a key at all"}, "SPOKES_MAIL_KEY must hold a 32-byte key"),
        ({"SPOKES_MAIL_KEY": "00" * 32, "SPOKES_MAIL_KEY_FILE": "x"}, "not both"),
        ({"SPOKES_MAIL_KEY_FILE": "/nonexistent/mail.key"}, "cannot read the mail key file"),
        ({"SPOKES_SMTP_HOST": "mail.example"}, "needs --smtp-from"),
        ({"SPOKES_SMTP_HOST": "m", "SPOKES_SMTP_FROM": "nobody"}, "--smtp-from must be"),
        ({"SPOKES_SMTP_HOST": "m", "SPOKES_SMTP_FROM": FROM, "SPOKES_SMTP_USER": "u"}, "PASSWORD"),
        ({"SPOKES_SMTP_HOST": "m", "SPOKES_SMTP_FROM": FROM, "SPOKES_SMTP_PORT": "0"}, "port"),
    ],
)
def test_a_bad_mail_setting_is_refused_with_what_to_fix(
    changes: dict[str, str], says: str, tmp_path: Path
) -> None:
    env = {"SPOKES_SERVER_SECRET": os.urandom(32).hex(), **changes}
    with pytest.raises(SettingsError, match=re.escape(says)):
        load_settings(data_dir=tmp_path, env=env)


def test_a_mail_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "mail.key"
    key_file.write_text(os.urandom(32).hex())
    key_file.chmod(0o644)
    env = {"SPOKES_SERVER_SECRET": os.urandom(32).hex()}
    with pytest.raises(SettingsError, match="chmod 600"):
        load_settings(data_dir=tmp_path, mail_key_file=key_file, env=env)


async def test_an_expulsion_asks_the_others_to_sign_and_tells_the_sponsor_not_the_subject(
    mail_server: RunningServer, smtp: SmtpServer, http: Any, pool: Any
) -> None:
    founder = Actor(http, mail_server.url)
    assert (await founder.found(Policy(cell_min=2, vouches=1))).status == 201
    view = GroupView(founder, founder.cell or b"")
    b, c, d = members = [Actor(http, mail_server.url) for _ in range(3)]
    for n, newcomer in enumerate(members):
        await bring_in(founder, newcomer, *members[:n])
        assert (await view.add(newcomer, await founder.admission_of(newcomer))).status == 201
    # The founder admitted D: D's sponsor. Everyone opts in after the admissions.
    f_mail, b_mail, c_mail, d_mail = [await opt_in(a) for a in (founder, b, c, d)]
    state = await view.refresh()
    reason = "seen reporting to the police"
    motion = make_expel_motion(b.key, b.network, state, d.id, reason, b.now())
    opened = await b.call(
        "POST", f"/v1/groups/{b32e(view.group)}/motions", {"motion": motion.statement.to_wire()}
    )
    assert opened.status == 201, opened.body
    expected = {
        f_mail: sorted([SUBJECTS[NoticeKind.EXPULSION], SUBJECTS[NoticeKind.MOTION]]),
        c_mail: [SUBJECTS[NoticeKind.MOTION]],
    }
    mails = await smtp.inbox.wait_for(3)
    await asyncio.sleep(0.3)
    assert {address: smtp.inbox.of(address) for address in expected} == expected
    assert smtp.inbox.of(d_mail) == [] and smtp.inbox.of(b_mail) == []
    secrets = [reason, *encodings(d.id), *encodings(motion.id), *encodings(view.group)]
    assert_content_free(mails, secrets)
