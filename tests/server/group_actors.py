"""Members of groups, played by tests: roster events, epochs and messages built with crypto/."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crypto import epochs, roster
from crypto.chains import Admission
from crypto.encoding import b32e, b64d, b64e, decode
from crypto.epochs import EpochKeys
from crypto.messages import Header, SealedMessage, open_message, seal_message, verify_message
from crypto.roster import RosterState
from crypto.statements import Statement, from_wire, verify_statement
from tests.server.actors import TABLES, Actor, Reply, table_counts


@dataclass
class GroupView:
    """What one member's client knows of one group."""

    actor: Actor
    group: bytes
    state: RosterState | None = None
    keys: dict[int, EpochKeys] = field(default_factory=dict)

    @property
    def rules(self) -> roster.GroupRules:
        assert self.actor.genesis is not None
        return roster.GroupRules.of(self.actor.genesis)

    async def refresh(self) -> RosterState:
        reply = await self.actor.call("GET", f"/v1/groups/{b32e(self.group)}/roster")
        assert reply.status == 200, reply.body
        events = [from_wire(w, "roster", self.actor.network) for w in reply.body["events"]]
        self.state = roster.verify_log(events, rules=self.rules)
        return self.state

    async def post(self, op: str, fields: dict[str, Any], **extra: Any) -> Reply:
        state = self.state or await self.refresh()
        event = roster.sign_event(
            self.actor.key, self.actor.network, state, op, self.actor.now(), fields
        )
        reply = await self.actor.call(
            "POST", f"/v1/groups/{b32e(self.group)}/roster", {"event": event.to_wire(), **extra}
        )
        if reply.status == 201:
            self.state = roster.apply(state, event, rules=self.rules)
        return reply

    async def add(self, newcomer: Actor, admission: Admission) -> Reply:
        """Add `newcomer` with the evidence an honest client carries: the
        certificate and the vouches, as this member reads them from the server."""
        state = self.state or await self.refresh()
        reply = await self.actor.call("GET", f"/v1/members/{newcomer.id_text}/evidence")
        assert reply.status == 200, reply.body
        vouches = [
            statement
            for statement in (verdict_of(w, self.actor.network) for w in reply.body["verdicts"])
            if statement.type == "vouch" and statement.author in state.members
        ]
        fields = roster.add_fields(newcomer.bundle(), admission, vouches)
        return await self.post("add", fields)

    async def commit_epoch(
        self, *, skip: bytes | None = None, secret: bytes | None = None
    ) -> Reply:
        state = self.state or await self.refresh()
        secret = secret or epochs.new_epoch_secret()
        epoch = state.epoch + 1
        commit = epochs.commit_next_epoch(secret, state)
        boxes = {b32e(m): b64e(box) for m, box in commit.boxes.items() if m != skip}
        reply = await self.post("epoch", commit.fields, secrets=boxes)
        if reply.status == 201:
            self.keys[epoch] = epochs.derive_epoch_keys(secret, state.group, epoch, state.members)
        return reply

    async def fetch_secret(self) -> tuple[RosterState, bytes]:
        """Fetch and open my box of the current epoch, checked against its commitment."""
        state = await self.refresh()
        reply = await self.actor.call(
            "GET", f"/v1/groups/{b32e(self.group)}/epochs/{state.epoch}/secret"
        )
        assert reply.status == 200, reply.body
        assert state.commitment is not None
        secret = epochs.open_secret(
            self.actor.kem,
            b64d(reply.body["sealed"]),
            state.group,
            state.epoch,
            state.roster_hash,
            self.actor.id,
            state.commitment,
        )
        return state, secret

    async def open_epoch(self) -> EpochKeys:
        state, secret = await self.fetch_secret()
        self.keys[state.epoch] = epochs.derive_epoch_keys(
            secret, state.group, state.epoch, state.members
        )
        return self.keys[state.epoch]

    def seal(self, text: str, epoch: int | None = None) -> SealedMessage:
        assert self.state is not None
        epoch = epoch or self.state.epoch
        counter, key = self.keys[epoch].chains[self.actor.id].next_for_sending()
        header = Header(self.group, epoch, self.actor.id, counter)
        return seal_message(self.actor.key, header, key, {"text": text, "head": self.state.head})

    async def send_sealed(self, message: SealedMessage) -> Reply:
        return await self.actor.call(
            "POST",
            f"/v1/groups/{b32e(self.group)}/messages",
            {
                "header": b64e(message.header),
                "ciphertext": b64e(message.ciphertext),
                "signature": b64e(message.signature),
            },
        )

    async def send(self, text: str) -> Reply:
        return await self.send_sealed(self.seal(text))

    async def read(self, senders: dict[bytes, Any]) -> list[str]:
        reply = await self.actor.call(
            "GET", f"/v1/groups/{b32e(self.group)}/events?since=0&limit=500"
        )
        assert reply.status == 200, reply.body
        texts = []
        for event in reply.body["events"]:
            if event["kind"] != "message":
                continue
            fields = decode(b64d(event["body"]))
            assert isinstance(fields, dict)
            message = SealedMessage(fields["header"], fields["ciphertext"], fields["signature"])  # type: ignore[arg-type]
            header = Header.decode(message.header)
            verify_message(message, senders[header.sender])
            keys = self.keys.get(header.epoch)
            if keys is None:
                texts.append("<unreadable>")
                continue
            content = open_message(message, keys.chains[header.sender].key_for(header.counter))
            texts.append(str(content["text"]))
        return texts


def creation_event(reply: Reply, network: bytes) -> Statement:
    return from_wire(reply.body["events"][0], "roster", network)


GROUP_TABLES = (
    *TABLES,
    "group_members",
    "group_events",
    "roster_events",
    "epoch_secrets",
    "messages",
    "profiles",
    "motions",
    "motion_signatures",
    "former_group_members",
)


async def all_counts(pool: Any) -> dict[str, Any]:
    """Row counts of every table a message could touch, and each group's counters."""
    counts: dict[str, Any] = await table_counts(pool, GROUP_TABLES)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT group_id, last_seq, epoch, epoch_messages, roster_seq FROM groups"
        )
    counts["groups_state"] = sorted(tuple(r) for r in rows)
    return counts


def verdict_of(wire: dict[str, str], network: bytes) -> Statement:
    """A vouch or a block from its wire form (its type is read from the body)."""
    body = b64d(wire["body"])
    kind = decode(body)
    assert isinstance(kind, dict)
    return verify_statement(body, b64d(wire["sig"]), str(kind["type"]), network)
