"""Mail notices without a database: what an address may be, sealing it, the fixed
texts, and handing mails to the mail server (aiosmtplib).

The rule this module keeps: a notice says only that something of its kind
happened. Its subject and body are fixed per kind, so no group, member,
message, reason or id can reach a mail, whoever calls. An address is sealed
with AES-GCM under the server's mail key (never in the database), with the
member id as associated data, and opened only to hand the mail over.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from enum import Enum

import aiosmtplib
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.settings import SmtpSettings

MAIL_KEY_BYTES = 32
NONCE_BYTES = 12
MAX_ADDRESS_CHARS = 254  # RFC 5321's limit on a path, less its angle brackets

# Local part: RFC 5322's dot-atom (no quoted strings, no comments); domain:
# letters, digits and hyphens in dot-separated labels (IDNs as punycode).
# Nothing in either can be a line break or a space: the address is written
# into a header and an SMTP command.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"({_LOCAL})@({_LABEL}(?:\.{_LABEL})*)")


class NoticeKind(str, Enum):  # noqa: UP042 (as ErrorCode: equal to its wire string)
    """What a notice says happened; stored as its value in mail_notices.kind."""

    ACTIVITY = "activity"
    INVITE_REDEEMED = "invite_redeemed"
    MOTION = "motion"
    REVIEW = "review"
    FREEZE = "freeze"
    EXPULSION = "expulsion"


_CLOSING = (
    "Open your Spokes client to see it. This mail says nothing more, on purpose: "
    "a mailbox is read by more people than a keystore.\n\n"
    "You get these notices because you asked for them (`spokes notify set`); "
    "`spokes notify clear` stops them.\n"
)

# Subject and first line of each kind; freeze and expulsion read alike, so a
# mailbox does not tell them apart either.
TEXTS: dict[NoticeKind, tuple[str, str]] = {
    NoticeKind.ACTIVITY: ("Spokes: activity is waiting", "There is new activity waiting for you."),
    NoticeKind.INVITE_REDEEMED: (
        "Spokes: your invite was redeemed",
        "Someone redeemed an invite you made; they wait for you to check their "
        "safety number and admit them.",
    ),
    NoticeKind.MOTION: (
        "Spokes: a motion needs your signature",
        "A motion in one of your groups is waiting for your signature (`spokes motions`).",
    ),
    NoticeKind.REVIEW: (
        "Spokes: someone you admitted is under review",
        "Someone you admitted is under review.",
    ),
    NoticeKind.FREEZE: (
        "Spokes: someone you admitted is the subject of a motion",
        "Someone you admitted is the subject of a motion.",
    ),
    NoticeKind.EXPULSION: (
        "Spokes: someone you admitted is the subject of a motion",
        "Someone you admitted is the subject of a motion.",
    ),
}


class MailKeyError(ValueError):
    """A sealed address does not open under this key (the key was changed?)."""


def valid_address(text: str) -> bool:
    """Whether ``text`` is a plain ``local@domain`` address this server will write to."""
    if len(text) > MAX_ADDRESS_CHARS or not text.isascii():
        return False
    match = _ADDRESS.fullmatch(text)
    return match is not None and len(match[1]) <= 64


def seal_address(key: bytes, member_id: bytes, address: str) -> bytes:
    """nonce || AES-256-GCM(address), bound to the member by associated data."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, address.encode("ascii"), member_id)


def open_address(key: bytes, member_id: bytes, sealed: bytes) -> str:
    try:
        plain = AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], member_id)
    except (InvalidTag, ValueError):
        raise MailKeyError("the address does not open under this mail key") from None
    return plain.decode("ascii")


def compose(smtp: SmtpSettings, address: str, kind: NoticeKind, now: datetime) -> EmailMessage:
    """The mail for one notice: fixed text, the operator's From, the member's address."""
    subject, lead = TEXTS[kind]
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = address
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    # The sender's domain, not this machine's name, makes the id unique.
    message["Message-ID"] = make_msgid(domain=smtp.sender.rpartition("@")[2])
    message.set_content(f"{lead}\n\n{_CLOSING}")
    return message


class Outcome(str, Enum):  # noqa: UP042
    SENT = "sent"
    RETRY = "retry"  # the mail server was unreachable or said "try later"
    REFUSED = "refused"  # the mail server refused the address for good (5xx)


@dataclass(frozen=True)
class Delivery:
    """What became of each mail of a round, and why the round stopped early if it did."""

    outcomes: list[Outcome]
    error: str | None = None  # the exception's type name: no address, no server text


async def deliver(smtp: SmtpSettings, mails: Sequence[EmailMessage], within_s: float) -> Delivery:
    """Hand ``mails`` to the mail server over one connection, each on its own,
    stopping after ``within_s`` seconds.

    Never raises for the mail server's sake: a connection that fails, or time
    that runs out, leaves every mail not yet handed over as RETRY and keeps
    the outcome of each one that was.
    """
    outcomes = [Outcome.RETRY] * len(mails)
    if not mails:
        return Delivery(outcomes)
    client = aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        username=smtp.user,
        password=smtp.password,
        start_tls=smtp.starttls,
        timeout=smtp.timeout_s,
    )
    try:
        async with asyncio.timeout(within_s), client:
            for n, mail in enumerate(mails):
                outcomes[n] = await _send_one(client, mail)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return Delivery(outcomes, type(exc).__name__)
    return Delivery(outcomes)


async def _send_one(client: aiosmtplib.SMTP, mail: EmailMessage) -> Outcome:
    try:
        await client.send_message(mail)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        permanent = all(500 <= refused.code < 600 for refused in exc.recipients)
        return Outcome.REFUSED if permanent else Outcome.RETRY
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code == 421:  # the server is closing the connection: nothing more goes on it
            raise
        return Outcome.REFUSED if 500 <= exc.code < 600 else Outcome.RETRY
    return Outcome.SENT
