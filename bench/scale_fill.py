"""The scale bench's database: a whole network written row by row and bulk-loaded with COPY.

bench/scale.py measures reads on what this module writes; nothing here
talks to a server. The network grows as a real one does. A founding cell
of stewards admits members. Each cell then admits twice its size and
splits each half off into a new cell, so cell n comes from cell
(n - 1) // 2. The newest cells are the deepest, and each member's admission
chain runs one link per split up to a steward. Spokespeople of `fanout`
neighbouring groups sit in a council, level upon level.

The rule this module keeps is the shape of every row, not the truth of the
history. Every statement is really signed by the key it names, so the
reads that check signatures again (evidence, the pending list) take them.
Every id is what the protocol derives: statement ids hash their bodies,
and invite lookups, proofs and headers come from crypto/. Every size is
the client's: ML-KEM key bundles, padded and sealed messages, HPKE epoch
boxes and sealed profiles are measured from a real one each. No rule book
replayed the roster logs, so epoch commitments and roster roots are
random, and nobody checked a quorum. Message ciphertexts and signatures are
random bytes of the real sizes. A client would refuse such a history; the
database can't tell.

Epochs follow the server's rules. A group commits a new one at its next
message after a roster change, or once the current one is older than the
policy's `epoch_seconds` or has carried `epoch_messages`. Each epoch holds
one sealed box per member, and every member reseals their profile under
it, as clients do.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from crypto.chains import NO_PREVIOUS, Admission, make_admission, make_revocation, make_verdict
from crypto.councils import council_create_fields, link_fields, make_acceptance, seat_evidence
from crypto.encoding import Value, b32e, encode
from crypto.epochs import seal_secret
from crypto.invites import InviteCode, make_invite, make_join
from crypto.keys import IdentityKey
from crypto.messages import BUCKETS, TAG_BYTES, Header, seal_profile
from crypto.motions import Motion, parse_motion, sign_motion, split_event_fields
from crypto.network import DAY, GROUP_ID_BYTES, KeyBundle, Policy, make_genesis, make_key_bundle
from crypto.roster import ZERO_HEAD, add_fields, create_fields
from crypto.sealing import KemPrivateKey, KemSuite
from crypto.statements import Statement, pack, sign_statement

HOUR = 3600
SPAN = 365 * DAY  # the network's age
CELL_SPAN = 330 * DAY  # cells are founded over this much of it; councils after
SESSION_TTL = 30 * DAY
# Plaintext buckets as the client fills them: a chat line fits the smallest
# (the sealed head, time and counters take about 130 bytes of it).
MESSAGE_MIX = ((BUCKETS[0], 0.80), (BUCKETS[1], 0.17), (BUCKETS[2], 0.03))
KEM_KEYS = 64  # real ML-KEM public keys, shared round robin by the members' bundles
COPY_ROWS = 40_000  # buffered rows that make the next cell boundary a COPY
PROFILE = {"name": "Alex Rivera"}

# Every table, with the columns written, in an order their foreign keys allow.
TABLES: dict[str, tuple[str, ...]] = {
    "statements": (
        "statement_id", "network_id", "type", "author", "subject", "group_id", "body", "sig",
        "created_at",
    ),
    "groups": (
        "group_id", "network_id", "kind", "level", "parent_id", "create_statement", "created_at",
        "last_seq", "roster_seq", "roster_head", "epoch", "rekey_needed", "epoch_started_at",
        "epoch_messages",
    ),
    "members": (
        "member_id", "network_id", "identity_key", "kem_bundle_statement", "cell_id",
        "invite_lookup", "join_statement", "join_proof", "inviter_id", "joined_at", "admitted_at",
        "blocked_at", "revoked_at", "is_steward",
    ),
    "invites": (
        "lookup_id", "network_id", "inviter_id", "cell_id", "proof_public_key", "payload",
        "statement_id", "expires_at", "created_at", "redeemed_by", "redeemed_at",
    ),
    "admissions": ("subject_id", "certificate_id", "issuer_id", "cell_id", "issued_at"),
    "vouches": ("subject_id", "voucher_id", "statement_id", "created_at"),
    "blocks": ("subject_id", "blocker_id", "statement_id", "created_at"),
    "revocations": ("member_id", "statement_id", "created_at", "network_id", "seq"),
    "login_challenges": ("challenge", "member_id", "expires_at"),
    "sessions": ("token_hash", "member_id", "created_at", "expires_at", "revoked_at"),
    "rate_limits": ("bucket", "window_start", "hits"),
    "group_members": ("group_id", "member_id", "added_at"),
    "former_group_members": ("group_id", "member_id", "last_seq", "roster_seq"),
    "roster_events": ("group_id", "seq", "event_id", "op", "created_at"),
    "group_events": ("group_id", "seq", "kind", "sender", "body", "created_at"),
    "epoch_secrets": ("group_id", "epoch", "member_id", "sealed"),
    "messages": ("group_id", "epoch", "sender", "counter", "event_seq"),
    "profiles": ("group_id", "member_id", "epoch", "sealed", "updated_at"),
    "motions": ("motion_id", "group_id", "kind", "status", "created_at"),
    "motion_signatures": ("motion_id", "group_id", "signer", "statement_id"),
    "council_seats": ("council_id", "group_id", "holder", "link_id", "link_seq"),
    "mail_addresses": ("member_id", "sealed", "updated_at", "activity_at"),
    "mail_notices": ("member_id", "kind", "created_at", "next_attempt_at", "attempts"),
}  # fmt: skip
# Written once, outside the COPY stream (one row, its head known at the end).
OTHER_TABLES = frozenset({"networks", "schema_migrations"})


@dataclass(frozen=True)
class Shape:
    """What to fill: members in cells, councils above them, messages over all groups."""

    members: int = 100_000  # on the cells' rosters; newcomers and former members come on top
    cell_size: int = 10
    fanout: int = 10  # seats per council
    levels: int = 3  # levels of councils
    messages: int = 1_000_000
    pending_every: int = 4  # one newcomer being vetted in every 4th cell
    blocked_every: int = 50  # one blocked newcomer in every 50th cell
    revoked_every: int = 100  # one revoked former member in every 100th cell
    invite_every: int = 20  # one open invite per 20 members
    mail_every: int = 5  # one member in 5 gets mail notices
    readers: int = 1000  # members whose session tokens are kept for the reads
    seed: int = 12

    @property
    def cells(self) -> int:
        return self.members // self.cell_size

    def councils(self) -> list[int]:
        """How many councils each level has (level 1 first)."""
        counts, below = [], self.cells
        for _ in range(self.levels):
            below = math.ceil(below / self.fanout)
            counts.append(below)
        return counts


@dataclass
class Person:
    """One member (or newcomer), their statements, and the rows that wait for their own."""

    key: IdentityKey
    bundle: KeyBundle
    line: tuple[bytes, ...]  # inviters, nearest first, up to a steward
    token: str
    joined: int
    invite: Statement | None = None
    code: InviteCode | None = None
    inviter: Person | None = None
    join: Statement | None = None
    proof: bytes | None = None
    admission: Admission | None = None
    admitted: int | None = None
    blocked: int | None = None
    revoked: int | None = None
    written: bool = False
    waiting: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    groups: int = 0

    @property
    def id(self) -> bytes:
        return self.key.member_id


@dataclass
class Log:
    """A group's event log and roster log while they are written."""

    group: bytes
    kind: str
    level: int
    created: int
    members: list[Person] = field(default_factory=list)
    seq: int = 0  # events so far (the group's last_seq)
    roster_seq: int = -1
    head: bytes = ZERO_HEAD
    create: bytes = b""
    epoch: int = 0
    epoch_at: int = 0
    epoch_messages: int = 0
    changed: bool = True
    counters: dict[bytes, int] = field(default_factory=dict)
    profiles: dict[bytes, tuple[int, bytes, int]] = field(default_factory=dict)
    spokesperson: Person | None = None
    elect: Statement | None = None  # the election that made them, for the seat above
    elect_motion: bytes = b""
    elect_seq: int = 0
    elect_signers: list[Person] = field(default_factory=list)


@dataclass(frozen=True)
class Reader:
    """A member whose session the reads use: what each read should find."""

    member: str
    token: str
    cell: str
    groups: int  # how many groups they are in (their cell and any councils)
    cellmate: str  # another admitted member of the cell, whose evidence they read
    pending: tuple[str, ...]  # the newcomers being vetted in their cell
    roster_events: int  # their cell's roster log
    cell_events: int  # their cell's events (last_seq)


@dataclass
class Filled:
    """What was filled: the counts, and the readers."""

    shape: Shape
    network: str
    readers: list[Reader]
    counts: dict[str, int]
    seconds: float = 0.0
    empty_database: int = 0  # bytes the database took, migrated, before the fill


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def depth(cell: int) -> int:
    """How many splits lie between a cell and the founding cell."""
    return (cell + 1).bit_length() - 1


class Rows:
    """Rows waiting to be COPYed, table by table."""

    def __init__(self) -> None:
        self.buffers: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
        self.counts: dict[str, int] = defaultdict(int)
        self.buffered = 0

    def add(self, table: str, *row: Any) -> None:
        self.buffers[table].append(row)
        self.counts[table] += 1
        self.buffered += 1

    def of(self, person: Person, table: str, *row: Any) -> None:
        """A row that refers to `person`: now if their member row is written, else with it."""
        if person.written:
            self.add(table, *row)
        else:
            person.waiting.append((table, row))

    async def copy(self, conn: Any) -> None:
        for table, rows in self.buffers.items():
            if rows:
                await conn.copy_records_to_table(table, records=rows, columns=TABLES[table])
                rows.clear()
        self.buffered = 0


class Filler:
    """Writes one network of `shape` into an empty, migrated database on `conn`."""

    def __init__(
        self, conn: Any, shape: Shape, now: int, say: Callable[[str], None] = lambda _: None
    ) -> None:
        self.conn, self.shape, self.now, self.say = conn, shape, now, say
        self.rng = random.Random(shape.seed)
        self.rows = Rows()
        self.policy = Policy()
        self.start = now - SPAN
        self.founder_key = IdentityKey.generate()
        self.genesis = make_genesis(self.founder_key, self.policy, self.start)
        self.network = self.genesis.network_id
        kems = [KemPrivateKey.generate(KemSuite.MLKEM768_X25519) for _ in range(KEM_KEYS)]
        self.kem_publics = [k.public_key().public_bytes() for k in kems]
        self.sizes = self._measure_sizes(kems[0])
        self.revocation_head = (0, NO_PREVIOUS)
        self.born: dict[int, list[Person]] = {}  # a cell's members, from its parent's split
        self.origins: dict[int, tuple[bytes, bytes, int]] = {}  # cell -> (group, split id, time)
        self.cells: list[Log] = []
        groups = shape.cells + sum(shape.councils())
        self.per_group = divmod(shape.messages, groups)  # messages per group, and the remainder
        self.groups_done = 0
        self.reader_people: list[tuple[Person, Log, Person, list[Person]]] = []
        self.people = 0  # member rows written so far

    def _measure_sizes(self, kem: KemPrivateKey) -> dict[str, int]:
        """The sizes the client really produces: an epoch box and a sealed profile."""
        group, member = os.urandom(GROUP_ID_BYTES), self.founder_key
        box = seal_secret(
            os.urandom(32),
            KemSuite.MLKEM768_X25519.value,
            kem.public_key().public_bytes(),
            group,
            1,
            os.urandom(32),
            member.member_id,
        )
        profile = seal_profile(os.urandom(32), group, 1, member, dict(PROFILE), version=1)
        return {"epoch_box": len(box), "profile": len(profile)}

    # --- The whole run ------------------------------------------------------------------

    async def fill(self) -> Filled:
        shape = self.shape
        body, sig = self.genesis.statement.body, self.genesis.statement.signature
        await self.conn.execute(
            "INSERT INTO networks (network_id, genesis_body, genesis_sig, created_at) "
            "VALUES ($1, $2, $3, $4)",
            self.network,
            body,
            sig,
            at(self.start),
        )
        for n in range(shape.cells):
            self.cells.append(self._cell(n))
            if self.rows.buffered >= COPY_ROWS:
                await self.rows.copy(self.conn)
            if (n + 1) % max(1, shape.cells // 10) == 0:
                self.say(f"  {n + 1:,} of {shape.cells:,} cells")
        below = self.cells
        for level, count in enumerate(shape.councils(), start=1):
            below = [
                self._council(level, below[k * shape.fanout : (k + 1) * shape.fanout])
                for k in range(count)
            ]
            await self.rows.copy(self.conn)
            self.say(f"  level {level}: {count:,} councils")
        self._rate_limits()
        await self.rows.copy(self.conn)
        seq, head = self.revocation_head
        await self.conn.execute(
            "UPDATE networks SET revocation_seq = $2, revocation_head = $3 WHERE network_id = $1",
            self.network,
            seq,
            None if seq == 0 else head,
        )
        readers = [self._reader(*r) for r in self.reader_people]
        return Filled(shape, b32e(self.network), readers, dict(self.rows.counts))

    # --- People -------------------------------------------------------------------------

    def _person(self, joined: int, line: tuple[bytes, ...]) -> Person:
        key = IdentityKey.generate()
        kem = self.kem_publics[self.rng.randrange(KEM_KEYS)]
        bundle = make_key_bundle(
            key, self.network, KemSuite.MLKEM768_X25519.value, kem, joined, joined + 2 * SPAN
        )
        return Person(key, bundle, line, secrets.token_urlsafe(32), joined)

    def _newcomer(self, inviter: Person, cell: bytes, when: int) -> Person:
        """Invited by `inviter` to `cell`, joined, and given a certificate, all before `when`."""
        person = self._person(when - 2 * HOUR, (inviter.id, *inviter.line))
        code = InviteCode.generate()
        expires = when - 3 * HOUR + self.policy.invite_expiry_seconds
        person.invite = make_invite(
            inviter.key, self.network, code, cell, when - 3 * HOUR, expires
        ).statement
        person.code, person.inviter = code, inviter
        person.join = make_join(
            person.key, self.network, code.lookup_id, person.bundle, when - 2 * HOUR
        ).statement
        person.proof = code.prove(person.join)
        person.admission = make_admission(
            inviter.key,
            self.network,
            person.key.public_key(),
            cell,
            code.lookup_id,
            person.join.id,
            when - 90 * 60,
        )
        self._statement(person.bundle.statement, subject=person.id, group=cell)
        self._statement(person.join, subject=person.id, group=cell)
        self._statement(person.invite, group=cell)
        self._statement(person.admission.statement, subject=person.id, group=cell)
        return person

    def _verdict(
        self, kind: Literal["vouch", "block"], author: Person, person: Person, when: int
    ) -> Statement:
        assert person.admission is not None
        verdict = make_verdict(kind, author.key, self.network, person.admission, when)
        statement = verdict.statement
        self._statement(statement, subject=person.id, group=person.admission.cell)
        table = "vouches" if kind == "vouch" else "blocks"
        self.rows.of(person, table, person.id, author.id, statement.id, at(when))
        return statement

    def _write_person(self, person: Person, cell: bytes) -> None:
        """The member row, their way in, every row that waited for it, and their logins."""
        code, inviter = person.code, person.inviter
        self.rows.add(
            "members",
            person.id,
            self.network,
            person.key.public_key().raw,
            person.bundle.statement.id,
            cell,
            None if code is None else code.lookup_id,
            None if person.join is None else person.join.id,
            person.proof,
            None if inviter is None else inviter.id,
            at(person.joined),
            None if person.admitted is None else at(person.admitted),
            None if person.blocked is None else at(person.blocked),
            None if person.revoked is None else at(person.revoked),
            inviter is None,
        )
        person.written = True
        if code is not None and inviter is not None and person.invite is not None:
            made = person.invite.time
            self.rows.add(
                "invites", code.lookup_id, self.network, inviter.id, person.invite.fields["cell"],
                code.proof_public_key, code.seal_payload({"genesis": pack(self.genesis.statement)}),
                person.invite.id, at(made + self.policy.invite_expiry_seconds), at(made),
                person.id, at(person.joined),
            )  # fmt: skip
        if person.admission is not None and inviter is not None:
            self.rows.add(
                "admissions", person.id, person.admission.statement.id, inviter.id,
                person.admission.cell, at(person.admission.statement.time),
            )  # fmt: skip
        for table, row in person.waiting:
            self.rows.add(table, *row)
        person.waiting.clear()
        self._logins(person, cell)

    def _logins(self, person: Person, cell: bytes) -> None:
        """A live session (whose token the reads use), an expired one for half, and, spread
        evenly over everyone, mail, a login under way and an open invite."""
        add = self.rows.add
        created = max(person.joined, self.now - self.rng.randrange(7 * DAY))
        revoked = None if person.revoked is None else at(person.revoked)
        token_hash = hashlib.sha256(person.token.encode("ascii")).digest()
        add("sessions", token_hash, person.id, at(created), at(created + SESSION_TTL), revoked)
        if self.rng.random() < 0.5:
            old = max(person.joined, created - 60 * DAY)
            add("sessions", os.urandom(32), person.id, at(old), at(old + SESSION_TTL), None)
        n, shape = self.people, self.shape
        self.people += 1
        if n % shape.mail_every == 0:
            sealed = os.urandom(12 + 24 + TAG_BYTES)  # an address of about 24 characters
            add("mail_addresses", person.id, sealed, at(created), None)
            if n % (shape.mail_every * 100) == 0:
                add("mail_notices", person.id, "activity", at(self.now), at(self.now), 0)
        if n % 100 == 0:
            add("login_challenges", os.urandom(32), person.id, at(self.now + 300))
        if person.admitted is not None and n % shape.invite_every == 0:
            self._open_invite(person, cell)

    def _open_invite(self, person: Person, cell: bytes) -> None:
        code = InviteCode.generate()
        made = self.now - self.rng.randrange(DAY)
        expires = made + self.policy.invite_expiry_seconds
        invite = make_invite(person.key, self.network, code, cell, made, expires).statement
        self._statement(invite, group=cell)
        self.rows.add(
            "invites", code.lookup_id, self.network, person.id, cell, code.proof_public_key,
            code.seal_payload({"genesis": pack(self.genesis.statement)}), invite.id, at(expires),
            at(made), None, None,
        )  # fmt: skip

    def _join_group(self, log: Log, person: Person, when: int) -> None:
        self.rows.of(person, "group_members", log.group, person.id, at(when))
        person.groups += 1

    # --- Statements and events ------------------------------------------------------------

    def _statement(
        self, statement: Statement, *, subject: bytes | None = None, group: bytes | None = None
    ) -> None:
        self.rows.add(
            "statements", statement.id, self.network, statement.type, statement.author, subject,
            group, statement.body, statement.signature, at(statement.time),
        )  # fmt: skip

    def _event(self, log: Log, kind: str, sender: bytes | None, body: bytes, when: int) -> int:
        log.seq += 1
        self.rows.add("group_events", log.group, log.seq, kind, sender, body, at(when))
        return log.seq

    def _roster(
        self, log: Log, author: Person, op: str, when: int, fields: dict[str, Value]
    ) -> Statement:
        """Sign and append the next event of the group's roster log."""
        seq = log.roster_seq + 1
        position: dict[str, Value] = {"group": log.group, "seq": seq, "prev": log.head, "op": op}
        event = sign_statement(author.key, "roster", self.network, when, {**fields, **position})
        self._statement(event, group=log.group)
        self.rows.add("roster_events", log.group, seq, event.id, op, at(when))
        self._event(
            log, "roster", author.id, encode({"body": event.body, "sig": event.signature}), when
        )
        log.roster_seq, log.head = seq, event.id
        if op == "create":
            log.create = event.id
        elif op != "epoch":
            log.changed = True
        return event

    def _motion(
        self, log: Log, opener: Person, kind: str, terms: dict[str, Value], when: int,
        signers: Sequence[Person],
    ) -> tuple[Motion, list[Statement]]:  # fmt: skip
        """Open a motion and have `signers` sign it: the motion and their signatures."""
        fields: dict[str, Value] = {
            "group": log.group, "kind": kind, "terms": terms, "head": log.head,
        }  # fmt: skip
        motion = parse_motion(sign_statement(opener.key, "motion", self.network, when, fields))
        self._statement(motion.statement, group=log.group)
        self.rows.add("motions", motion.id, log.group, kind, "done", at(when))
        wire = encode({"body": motion.statement.body, "sig": motion.statement.signature})
        self._event(log, "motion", opener.id, wire, when)
        signatures = []
        for i, signer in enumerate(signers, start=1):
            signature = sign_motion(signer.key, self.network, motion, when + i)
            self._statement(signature, group=log.group)
            row = (motion.id, log.group, signer.id, signature.id)
            self.rows.of(signer, "motion_signatures", *row)
            wire = encode({"body": signature.body, "sig": signature.signature})
            self._event(log, "signature", signer.id, wire, when + i)
            signatures.append(signature)
        return motion, signatures

    def _elect(self, log: Log, when: int) -> None:
        """The group elects its first member; a majority signs (the opener among them)."""
        opener, chosen = log.members[min(1, len(log.members) - 1)], log.members[0]
        signers = [m for m in log.members if m is not opener][: len(log.members) // 2]
        terms: dict[str, Value] = {
            "member": chosen.id, "roster": [len(log.members), os.urandom(32)],
            "prev_link": None, "level": log.level,
        }  # fmt: skip
        motion, signatures = self._motion(log, opener, "elect", terms, when, signers)
        fields = split_event_fields(motion, signatures)
        log.elect = self._roster(log, opener, "elect", when + len(signers) + 1, fields)
        log.elect_motion = motion.id
        log.elect_seq, log.spokesperson = log.roster_seq, chosen
        log.elect_signers = [opener, *signers]

    def _epoch(self, log: Log, author: Person, when: int) -> None:
        """A new epoch sealed to every member; each then reseals their profile under it."""
        log.epoch += 1
        fields: dict[str, Value] = {
            "epoch": log.epoch, "roster": os.urandom(32), "commitment": os.urandom(32),
        }  # fmt: skip
        self._roster(log, author, "epoch", when, fields)
        size = self.sizes["epoch_box"]
        for member in log.members:
            self.rows.of(member, "epoch_secrets", log.group, log.epoch, member.id, os.urandom(size))
        for i, member in enumerate(log.members, start=1):
            sealed = os.urandom(self.sizes["profile"])
            body = encode({"epoch": log.epoch, "sealed": sealed})
            self._event(log, "profile", member.id, body, when + i)
            log.profiles[member.id] = (log.epoch, sealed, when + i)
        log.epoch_at, log.epoch_messages, log.changed = when, 0, False
        log.counters.clear()

    def _message(self, log: Log, when: int) -> None:
        sender = self.rng.choice(log.members)
        policy = self.policy
        if (
            log.changed
            or log.epoch == 0
            or when - log.epoch_at >= policy.epoch_seconds
            or log.epoch_messages >= policy.epoch_messages
        ):
            self._epoch(log, sender, when - 60)
        counter = log.counters.get(sender.id, 0)
        log.counters[sender.id] = counter + 1
        header = Header(log.group, log.epoch, sender.id, counter).encode()
        bucket = self.rng.choices([b for b, _ in MESSAGE_MIX], [w for _, w in MESSAGE_MIX])[0]
        body = encode(
            {
                "header": header,
                "ciphertext": self.rng.randbytes(bucket + TAG_BYTES),
                "signature": self.rng.randbytes(64),
            }
        )
        seq = self._event(log, "message", sender.id, body, when)
        self.rows.of(sender, "messages", log.group, log.epoch, sender.id, counter, seq)
        log.epoch_messages += 1

    def _message_times(self, log: Log) -> list[int]:
        base, extra = self.per_group
        count = base + (1 if self.groups_done < extra else 0)
        self.groups_done += 1
        low, high = log.created + 2 * HOUR, self.now - 60
        return sorted(self.rng.randrange(low, high) for _ in range(count))

    def _close(self, log: Log) -> None:
        """The group's row, and its members' profiles as they stand."""
        self.rows.add(
            "groups", log.group, self.network, log.kind, log.level, None, log.create,
            at(log.created), log.seq, log.roster_seq, log.head, log.epoch, False,
            at(log.epoch_at) if log.epoch else None, log.epoch_messages,
        )  # fmt: skip
        for member in log.members:
            if member.id in log.profiles:
                epoch, sealed, when = log.profiles[member.id]
                self.rows.of(member, "profiles", log.group, member.id, epoch, sealed, at(when))
        log.profiles.clear()
        log.counters.clear()

    # --- Cells ----------------------------------------------------------------------------

    def _created(self, cell: int) -> int:
        period = CELL_SPAN // (depth(self.shape.cells - 1) + 1)
        return self.start + depth(cell) * period + self.rng.randrange(period * 9 // 10)

    def _cell(self, n: int) -> Log:
        """Cell `n`'s whole life: made, elects, then splits, revokes and messages in time order."""
        shape = self.shape
        log = self._founding_cell() if n == 0 else self._split_off(n)
        revoked = log.members[shape.cell_size] if len(log.members) > shape.cell_size else None
        self._elect(log, log.created + HOUR)
        plans = [(when, "message", 0) for when in self._message_times(log)]
        if revoked is not None:
            plans.append((log.created + DAY, "revoke", 0))
        for child in (2 * n + 1, 2 * n + 2):
            if child < shape.cells:
                plans.append((self._created(child), "split", child))
        for when, what, child in sorted(plans):
            if what == "split":
                self._split(log, child, when)
            elif what == "revoke" and revoked is not None:
                self._revoke(log, revoked, when)
            else:
                self._message(log, when)
        waiting = self._waiting(log, n)
        self._close(log)
        for person in [*log.members, *waiting, *([revoked] if revoked else [])]:
            self._write_person(person, log.group)
        if n % shape.pending_every == 0:
            self._maybe_reader(n, log, waiting)
        log.members = []  # the councils need only its spokesperson and their election
        return log

    def _split_off(self, n: int) -> Log:
        """Cell `n` as its parent's split made it: its create event, from the split's id."""
        group, origin, created = self.origins.pop(n)
        log = Log(group, "cell", 0, created)
        newcomers = self.born.pop(n)
        lines = {p.id: frozenset(p.line) for p in newcomers}
        since = {p.id: p.admitted or p.joined for p in newcomers}
        bundles = [p.bundle for p in newcomers]
        fields = create_fields("cell", 0, None, bundles, origin, lines, since)
        self._roster(log, newcomers[0], "create", created, fields)
        log.members = list(newcomers)
        for person in newcomers:
            self._join_group(log, person, created)
        return log

    def _founding_cell(self) -> Log:
        """The founder's cell, with the members it admitted itself (no split made it)."""
        bundle = self._founder_bundle()
        founder = Person(self.founder_key, bundle, (), secrets.token_urlsafe(32), self.start)
        founder.admitted = self.start
        log = Log(os.urandom(GROUP_ID_BYTES), "cell", 0, self.start)
        fields = create_fields("cell", 0, None, [founder.bundle], None)
        self._roster(log, founder, "create", self.start, fields)
        log.members = [founder]
        self._join_group(log, founder, self.start)
        count = self.shape.cell_size - 1 + self._revoked_in(0)
        for person in self._bring_in(log, count, self.start + HOUR):
            self._join_group(log, person, self.start + HOUR)
        return log

    def _founder_bundle(self) -> KeyBundle:
        bundle = make_key_bundle(
            self.founder_key,
            self.network,
            KemSuite.MLKEM768_X25519.value,
            self.kem_publics[0],
            self.start,
            self.start + 2 * SPAN,
        )
        self._statement(bundle.statement)
        return bundle

    def _revoked_in(self, cell: int) -> int:
        """1 for a cell that holds a member to be revoked (its 11th), else 0."""
        return 1 if cell % self.shape.revoked_every == 0 else 0

    def _bring_in(self, log: Log, count: int, when: int) -> list[Person]:
        """`count` newcomers invited, vetted and added to the group's roster at `when`."""
        members = list(log.members)
        added = []
        for i in range(count):
            inviter = members[i % len(members)]
            voucher = members[(i + 1) % len(members)]
            person = self._newcomer(inviter, log.group, when + i)
            vouches = []
            if voucher is not inviter:
                vouches.append(self._verdict("vouch", voucher, person, when - HOUR + i))
            person.admitted = when - HOUR + i + 1
            assert person.admission is not None
            fields = add_fields(person.bundle, person.admission, vouches)
            self._roster(log, inviter, "add", when + i, fields)
            log.members.append(person)
            added.append(person)
        return added

    def _split(self, log: Log, child: int, when: int) -> None:
        """A new cell's members are admitted here, then split off by a motion they all sign."""
        before = list(log.members)
        moved = self._bring_in(log, self.shape.cell_size + self._revoked_in(child), when)
        new_group = os.urandom(GROUP_ID_BYTES)
        terms: dict[str, Value] = {"moved": sorted(p.id for p in moved), "new_group": new_group}
        motion, signatures = self._motion(log, moved[0], "split", terms, when + 600, moved[1:])
        fields = split_event_fields(motion, signatures)
        split = self._roster(log, moved[0], "split", when + 1800, fields)
        for person in moved:
            self.rows.of(
                person, "former_group_members", log.group, person.id, log.seq, log.roster_seq
            )
        log.members = before
        self.born[child] = moved
        self.origins[child] = (new_group, split.id, when + 1860)

    def _revoke(self, log: Log, person: Person, when: int) -> None:
        """A steward revokes a member; their cell takes them off its roster."""
        seq, prev = self.revocation_head
        revocation = make_revocation(
            self.founder_key, self.network, person.id, when, seq=seq, prev=prev
        ).statement
        self._statement(revocation, subject=person.id)
        self.rows.of(person, "revocations", person.id, revocation.id, at(when), self.network, seq)
        self.revocation_head = (seq + 1, revocation.id)
        fields: dict[str, Value] = {
            "member": person.id, "reason": "revoked", "revocation": pack(revocation),
        }  # fmt: skip
        self._roster(log, log.members[0], "remove", when + 60, fields)
        log.members.remove(person)
        person.revoked = when
        self.rows.of(person, "former_group_members", log.group, person.id, log.seq, log.roster_seq)
        # Their group membership row goes (not yet written: they are written with the cell).
        person.waiting = [w for w in person.waiting if w[0] != "group_members"]
        person.groups -= 1

    def _waiting(self, log: Log, n: int) -> list[Person]:
        """Newcomers joined to this cell and not on its roster: being vetted, or blocked."""
        waiting = []
        if n % self.shape.pending_every == 0:
            pending = self._newcomer(log.members[1 % len(log.members)], log.group, self.now - DAY)
            waiting.append(pending)
        if n and n % self.shape.blocked_every == 0:
            blocked = self._newcomer(log.members[0], log.group, self.now - 2 * DAY)
            self._verdict("block", log.members[2 % len(log.members)], blocked, self.now - DAY)
            blocked.blocked = self.now - DAY
            waiting.append(blocked)
        return waiting

    # --- Councils --------------------------------------------------------------------------

    def _council(self, level: int, below: list[Log]) -> Log:
        """The spokespeople of `below` sit in a council, which elects its own."""
        created = max(g.created for g in below) + DAY
        first = below[0]
        founder = first.spokesperson
        assert founder is not None and first.elect is not None
        log = Log(os.urandom(GROUP_ID_BYTES), "council", level, created)
        fields = council_create_fields(level, founder.bundle, first.group, self._seat(first))
        self._roster(log, founder, "create", created, fields)
        log.members = [founder]
        self._join_group(log, founder, created)
        self._seat_row(log, first)
        for i, group in enumerate(below[1:], start=1):
            holder = group.spokesperson
            assert holder is not None
            when = created + i * HOUR
            signers = [m for m in log.members if m is not founder][: len(log.members) // 2]
            terms: dict[str, Value] = {"group": group.group}
            motion, signatures = self._motion(log, founder, "link", terms, when, signers)
            accept = make_acceptance(holder.key, self.network, log.group, group.group, when + 30)
            fields = link_fields(motion, signatures, accept, self._seat(group))
            self._roster(log, founder, "link", when + 60, fields)
            log.members.append(holder)
            self._join_group(log, holder, when + 60)
            self._seat_row(log, group)
        self._elect(log, created + len(below) * HOUR)
        for when in self._message_times(log):
            self._message(log, when)
        self._close(log)
        return log

    def _seat(self, group: Log) -> dict[str, Value]:
        """A seat's evidence: the group's election, proofs of its signers on its roster, keys."""
        assert group.elect is not None and group.spokesperson is not None
        proofs: list[Value] = [
            [
                m.id, m.key.public_key().raw, KemSuite.MLKEM768_X25519.value,
                m.bundle.kem_public, i, [os.urandom(32) for _ in range(4)],
            ]
            for i, m in enumerate(group.elect_signers)
        ]  # fmt: skip
        return seat_evidence(group.elect, proofs, group.spokesperson.bundle)

    def _seat_row(self, council: Log, group: Log) -> None:
        assert group.spokesperson is not None
        self.rows.add(
            "council_seats", council.group, group.group, group.spokesperson.id,
            group.elect_motion, group.elect_seq,
        )  # fmt: skip

    # --- Rate limits and readers ----------------------------------------------------------

    def _rate_limits(self) -> None:
        """Rate-limit windows, as a day of logins and invite fetches leaves them."""
        for _ in range(max(10, self.shape.members // 20)):
            window = self.now - self.rng.randrange(DAY) // 60 * 60
            self.rows.add("rate_limits", os.urandom(32), at(window), self.rng.randrange(1, 20))

    def _maybe_reader(self, n: int, log: Log, waiting: list[Person]) -> None:
        """Readers come from cells with a newcomer waiting, spread over the whole network."""
        pending_cells = max(1, self.shape.cells // self.shape.pending_every)
        stride = max(1, pending_cells // self.shape.readers)
        if (
            len(self.reader_people) >= self.shape.readers
            or (n // self.shape.pending_every) % stride
        ):
            return
        reader, mate = self.rng.sample(log.members, 2)
        pending = [p for p in waiting if p.blocked is None]
        self.reader_people.append((reader, log, mate, pending))

    def _reader(self, person: Person, log: Log, mate: Person, pending: list[Person]) -> Reader:
        return Reader(
            b32e(person.id),
            person.token,
            b32e(log.group),
            person.groups,
            b32e(mate.id),
            tuple(b32e(p.id) for p in pending),
            log.roster_seq + 1,
            log.seq,
        )
