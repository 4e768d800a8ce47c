"""Requests to the Spokes HTTP API (docs/API.md) and the shapes of its answers.

The rule it keeps: this module only builds request values and checks
response shapes; it never sends anything (transport.py does) and never
decides whether a statement is true (verify.py does, with crypto/). A
response that has the wrong shape raises ClientError("bad_response").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from client.errors import ClientError
from crypto import labels
from crypto.encoding import b32e, b64d, b64e, encode
from crypto.statements import Statement

Method = Literal["GET", "POST", "PUT", "DELETE"]
Wire = dict[str, Any]


@dataclass(frozen=True)
class Request:
    """One HTTP request: method, path, JSON body, and whether it needs a session."""

    method: Method
    path: str
    body: Wire | None = None
    auth: bool = True


# Builders.


def create_network(genesis: Statement, cell: Statement, key_bundle: Statement) -> Request:
    body = {
        "genesis": genesis.to_wire(),
        "cell": cell.to_wire(),
        "key_bundle": key_bundle.to_wire(),
    }
    return Request("POST", "/v1/networks", body, auth=False)


def login_challenge(member_id: bytes) -> Request:
    return Request("POST", "/v1/auth/challenge", {"member_id": b32e(member_id)}, auth=False)


LOGIN_CONTEXT = labels.LOGIN


def login_message(challenge: bytes, member_id: bytes) -> bytes:
    """What the identity key signs, after LOGIN_CONTEXT, to answer a challenge."""
    return encode({"challenge": challenge, "member": member_id})


def login_session(member_id: bytes, challenge: bytes, signature: bytes) -> Request:
    body = {
        "member_id": b32e(member_id),
        "challenge": b64e(challenge),
        "signature": b64e(signature),
    }
    return Request("POST", "/v1/auth/session", body, auth=False)


def create_invite(invite: Statement, payload: bytes) -> Request:
    return Request("POST", "/v1/invites", {"invite": invite.to_wire(), "payload": b64e(payload)})


def fetch_invite(lookup_id: bytes) -> Request:
    return Request("GET", f"/v1/invites/{b32e(lookup_id)}", auth=False)


def redeem_invite(
    lookup_id: bytes, join: Statement, key_bundle: Statement, proof: bytes
) -> Request:
    body = {"join": join.to_wire(), "key_bundle": key_bundle.to_wire(), "proof": b64e(proof)}
    return Request("POST", f"/v1/invites/{b32e(lookup_id)}/redeem", body, auth=False)


def pending_admissions() -> Request:
    return Request("GET", "/v1/admissions/pending")


def member_evidence(member_id: bytes) -> Request:
    return Request("GET", f"/v1/members/{b32e(member_id)}/evidence")


def post_admission(admission: Statement) -> Request:
    return Request("POST", "/v1/admissions", {"admission": admission.to_wire()})


def post_verdict(verdict: Statement) -> Request:
    if verdict.type == "vouch":
        return Request("POST", "/v1/vouches", {"vouch": verdict.to_wire()})
    return Request("POST", "/v1/blocks", {"block": verdict.to_wire()})


def revocation_list() -> Request:
    return Request("GET", "/v1/revocations")


def post_revocation(revocation: Statement) -> Request:
    return Request("POST", "/v1/revocations", {"revocation": revocation.to_wire()})


def parse_revocation_list(data: Any) -> tuple[Wire, ...]:
    return _wires(data, "revocations")


# Groups, roster logs, epochs, messages, profiles and motions (part 2).


def my_groups() -> Request:
    return Request("GET", "/v1/groups")


def group_roster(group: bytes) -> Request:
    return Request("GET", f"/v1/groups/{b32e(group)}/roster")


def post_roster_event(
    group: bytes,
    event: Statement,
    secrets: dict[bytes, bytes] | None = None,
    create: Statement | None = None,
) -> Request:
    body: Wire = {"event": event.to_wire()}
    if secrets is not None:
        body["secrets"] = {b32e(m): b64e(box) for m, box in secrets.items()}
    if create is not None:
        body["create"] = create.to_wire()
    return Request("POST", f"/v1/groups/{b32e(group)}/roster", body)


def epoch_secret(group: bytes, epoch: int) -> Request:
    return Request("GET", f"/v1/groups/{b32e(group)}/epochs/{epoch}/secret")


def group_events(group: bytes, since: int, limit: int) -> Request:
    return Request("GET", f"/v1/groups/{b32e(group)}/events?since={since}&limit={limit}")


def post_message(group: bytes, header: bytes, ciphertext: bytes, signature: bytes) -> Request:
    body = {"header": b64e(header), "ciphertext": b64e(ciphertext), "signature": b64e(signature)}
    return Request("POST", f"/v1/groups/{b32e(group)}/messages", body)


def put_profile(group: bytes, epoch: int, sealed: bytes) -> Request:
    return Request(
        "PUT", f"/v1/groups/{b32e(group)}/profile", {"epoch": epoch, "sealed": b64e(sealed)}
    )


def group_profiles(group: bytes) -> Request:
    return Request("GET", f"/v1/groups/{b32e(group)}/profiles")


def open_motion(group: bytes, motion: Statement) -> Request:
    return Request("POST", f"/v1/groups/{b32e(group)}/motions", {"motion": motion.to_wire()})


def sign_motion(motion_id: bytes, signature: Statement) -> Request:
    return Request(
        "POST", f"/v1/motions/{b32e(motion_id)}/signatures", {"signature": signature.to_wire()}
    )


def open_motions() -> Request:
    return Request("GET", "/v1/motions")


# Councils (part 3).


def create_council(create: Statement) -> Request:
    return Request("POST", "/v1/councils", {"create": create.to_wire()})


def group_seats(group: bytes) -> Request:
    return Request("GET", f"/v1/groups/{b32e(group)}/seats")


def council_invitation(council: bytes) -> Request:
    return Request("GET", f"/v1/councils/{b32e(council)}/invitation")


# Mail notices (issue 11).


def set_notify(address: str) -> Request:
    return Request("PUT", "/v1/notify", {"address": address})


def clear_notify() -> Request:
    return Request("DELETE", "/v1/notify")


def parse_notify(data: Any) -> str:
    """The notices' state after the change: "on" or "off"."""
    status = field(data, "status", str)
    if status not in ("on", "off"):
        raise _bad("'status' is neither on nor off")
    return str(status)


# Response shapes.


def _bad(what: str) -> ClientError:
    return ClientError(
        "bad_response",
        f"The server's answer is not what this client expects ({what}). "
        "Check that --server points at a Spokes server of a matching version.",
    )


def field(data: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    """`data[name]`, checked to be of `kind` (bool is never an int here)."""
    if not isinstance(data, dict) or name not in data:
        raise _bad(f"missing {name!r}")
    value = data[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _bad(f"{name!r} has the wrong type")
    if not isinstance(value, kind):
        raise _bad(f"{name!r} has the wrong type")
    return value


def optional(data: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if isinstance(data, dict) and data.get(name) is None:
        return None
    return field(data, name, kind)


def b64_field(data: Any, name: str) -> bytes:
    try:
        return b64d(field(data, name, str))
    except ValueError as exc:
        raise _bad(f"{name!r} is not base64") from exc


@dataclass(frozen=True)
class NetworkCreated:
    network_id: str
    cell_id: str
    member_id: str


def parse_network_created(data: Any) -> NetworkCreated:
    return NetworkCreated(
        field(data, "network_id", str), field(data, "cell_id", str), field(data, "member_id", str)
    )


@dataclass(frozen=True)
class Session:
    token: str
    expires_at: int


def parse_challenge(data: Any) -> bytes:
    return b64_field(data, "challenge")


def parse_session(data: Any) -> Session:
    return Session(field(data, "token", str), field(data, "expires_at", int))


@dataclass(frozen=True)
class InviteStored:
    lookup_id: str
    expires_at: int


def parse_invite_stored(data: Any) -> InviteStored:
    return InviteStored(field(data, "lookup_id", str), field(data, "expires_at", int))


def parse_invite_payload(data: Any) -> bytes:
    return b64_field(data, "payload")


@dataclass(frozen=True)
class MemberState:
    """The server's short answer after a redemption, admission, vouch or block."""

    member_id: str
    status: str


def parse_member_state(data: Any) -> MemberState:
    return MemberState(field(data, "member_id", str), field(data, "status", str))


@dataclass(frozen=True)
class CellMemberWire:
    member_id: str
    chain: tuple[Wire, ...]
    admitted_at: int | None


@dataclass(frozen=True)
class Evidence:
    """Everything the server holds about one member, not yet verified."""

    member_id: str
    network_id: str
    cell_id: str
    joined_at: int
    server_status: str
    key_bundle: Wire | None
    join: Wire | None
    proof: str | None
    invite: Wire | None
    admission: Wire | None
    chain: tuple[Wire, ...]
    verdicts: tuple[Wire, ...]
    # None (and no members) when the server shows a member not yet admitted
    # only their own statements: nothing of the cell before vetting completes.
    cell_group: Wire | None
    cell_members: tuple[CellMemberWire, ...]
    revocations: tuple[Wire, ...]
    # Verdict authors and the issuer no longer in the cell, and the roster
    # logs that may show they were: the admission cell's first.
    former_members: tuple[CellMemberWire, ...] = ()
    cell_history: tuple[tuple[Wire, ...], ...] = ()


def _wires(data: Any, name: str) -> tuple[Wire, ...]:
    items = field(data, name, list)
    if not all(isinstance(item, dict) for item in items):
        raise _bad(f"{name!r} holds something that is not a statement")
    return tuple(items)


def _member_wires(data: Any, name: str) -> tuple[CellMemberWire, ...]:
    return tuple(
        CellMemberWire(
            field(item, "member_id", str),
            _wires(item, "chain"),
            optional(item, "admitted_at", int),
        )
        for item in field(data, name, list)
    )


def _logs(data: Any, name: str) -> tuple[tuple[Wire, ...], ...]:
    logs = field(data, name, list)
    if not all(isinstance(log, list) for log in logs):
        raise _bad(f"{name!r} holds something that is not a roster log")
    return tuple(_wires({"events": log}, "events") for log in logs)


def parse_evidence(data: Any) -> Evidence:
    cell = field(data, "cell", (dict, type(None)))  # null: a pending member's own view
    return Evidence(
        member_id=field(data, "member_id", str),
        network_id=field(data, "network_id", str),
        cell_id=field(data, "cell_id", str),
        joined_at=field(data, "joined_at", int),
        server_status=field(data, "status", str),
        key_bundle=optional(data, "key_bundle", dict),
        join=optional(data, "join", dict),
        proof=optional(data, "proof", str),
        invite=optional(data, "invite", dict),
        admission=optional(data, "admission", dict),
        chain=_wires(data, "chain"),
        verdicts=_wires(data, "verdicts"),
        cell_group=None if cell is None else field(cell, "group", dict),
        cell_members=() if cell is None else _member_wires(cell, "members"),
        revocations=_wires(data, "revocations"),
        former_members=_member_wires(data, "former_members"),
        cell_history=_logs(data, "cell_history"),
    )


def parse_pending(data: Any) -> list[Evidence]:
    return [parse_evidence(item) for item in field(data, "pending", list)]


# Part 2 shapes.


@dataclass(frozen=True)
class GroupSummary:
    group_id: str
    kind: str
    level: int
    members: int
    last_seq: int


def parse_groups(data: Any) -> list[GroupSummary]:
    return [
        GroupSummary(
            field(item, "group_id", str),
            field(item, "kind", str),
            field(item, "level", int),
            field(item, "members", int),
            field(item, "last_seq", int),
        )
        for item in field(data, "groups", list)
    ]


def parse_roster(data: Any) -> tuple[Wire, ...]:
    return _wires(data, "events")


@dataclass(frozen=True)
class GroupEvent:
    """One event of a group's log, as the server relays it (not yet verified)."""

    group: str
    seq: int
    kind: str
    sender: str | None
    body: bytes
    created_at: int


def parse_event(item: Any) -> GroupEvent:
    return GroupEvent(
        field(item, "group", str),
        field(item, "seq", int),
        field(item, "kind", str),
        optional(item, "sender", str),
        b64_field(item, "body"),
        field(item, "created_at", int),
    )


def parse_events(data: Any) -> list[GroupEvent]:
    return [parse_event(item) for item in field(data, "events", list)]


def parse_sealed(data: Any) -> bytes:
    return b64_field(data, "sealed")


@dataclass(frozen=True)
class MessagePosted:
    message_id: str
    cursor: int


def parse_message_posted(data: Any) -> MessagePosted:
    return MessagePosted(field(data, "message_id", str), field(data, "cursor", int))


@dataclass(frozen=True)
class ProfileWire:
    member_id: str
    epoch: int
    sealed: bytes


def parse_profiles(data: Any) -> list[ProfileWire]:
    return [
        ProfileWire(
            field(item, "member_id", str), field(item, "epoch", int), b64_field(item, "sealed")
        )
        for item in field(data, "profiles", list)
    ]


@dataclass(frozen=True)
class MotionWire:
    motion_id: str
    group_id: str
    kind: str
    motion: Wire
    signatures: tuple[Wire, ...]


def parse_motions(data: Any) -> list[MotionWire]:
    return [
        MotionWire(
            field(item, "motion_id", str),
            field(item, "group_id", str),
            field(item, "kind", str),
            field(item, "motion", dict),
            _wires(item, "signatures"),
        )
        for item in field(data, "motions", list)
    ]


def parse_motion_id(data: Any) -> str:
    return str(field(data, "motion_id", str))


def parse_group_id(data: Any) -> str:
    return str(field(data, "group_id", str))


@dataclass(frozen=True)
class SeatWire:
    """A seat my group holds in a council, as the server tells it: a hint, not a fact."""

    council_id: str
    holder: str | None
    link_id: bytes
    link_seq: int
    council_seq: int
    council_head: bytes | None


def parse_seats(data: Any) -> list[SeatWire]:
    return [
        SeatWire(
            field(item, "council_id", str),
            optional(item, "holder", str),
            b64_field(item, "link_id"),
            field(item, "link_seq", int),
            field(item, "council_seq", int),
            None
            if optional(item, "council_head", str) is None
            else b64_field(item, "council_head"),
        )
        for item in field(data, "seats", list)
    ]


@dataclass(frozen=True)
class InvitationWire:
    """A council's open motion to link my group, with its signatures and the council's log."""

    group_id: str
    motion: Wire
    signatures: tuple[Wire, ...]
    roster: tuple[Wire, ...]


def parse_invitation(data: Any) -> InvitationWire:
    return InvitationWire(
        field(data, "group_id", str),
        field(data, "motion", dict),
        _wires(data, "signatures"),
        _wires(data, "roster"),
    )
