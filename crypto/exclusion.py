"""Exclusion: expulsion by a quorum of the subject's group, and self-revocation against seizure.

A revocation (crypto/chains.py) states on what grounds a member's key is no
longer trusted, and carries the proof of it, so that every member can check
it without the group's roster log:

- `steward`: signed by a steward of the genesis (part 1).
- `expelled`: carries an `expel` motion of a group the subject is in, its
  `motion-sign` signatures, and `proofs`: each signer, and the subject, shown
  on the roster the motion commits to (its size and the root of
  crypto/rostertree.py's tree). The signers, never the subject, reach the
  policy's `expulsion_quorum` of the roster other than the subject. Its
  author is one of them: the member whose signature completed the quorum.
- `self`: carries a `self-revocation` the subject signed in advance, naming
  the member who holds it; only that holder publishes it.

The rule this module keeps: `check_grounds` is the one judge of a
revocation's grounds, for the server (before it appends one to the chain)
and every client (replaying the chain, or a roster `remove` carrying one).
What it can't see from outside the group (whether the committed roster is
the group's real one) the group's own rule book checks when the expulsion
takes effect there (crypto/roster.py `remove` with reason `expelled`,
against the current roster), and the group's members raise the alarm on an
expulsion of their group they did not see pass: see docs/THREAT_MODEL.md.

The reason for an expulsion is sealed (HPKE) to each member of the group
but the subject, inside the motion's terms: the server never reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from crypto import labels
from crypto.delegations import Entry, entry_value, parse_entries
from crypto.encoding import Value, decode, encode
from crypto.errors import DecryptionFailed, RuleViolation
from crypto.keys import IdentityKey
from crypto.motions import Motion, make_motion, parse_motion
from crypto.network import GROUP_ID_BYTES
from crypto.quorum import quorum_of
from crypto.roster_state import GroupRules, RosterState
from crypto.rostertree import prove, roster_root, verify_proof
from crypto.sealing import KemPrivateKey, KemPublicKey, KemSuite, open_sealed, seal
from crypto.statements import Statement, get_bytes, get_str, pack, sign_statement, unpack

GROUNDS = ("steward", "expelled", "self")
MAX_REASON_CHARS = 500
EXPEL_TERMS = {"member", "roster", "reason"}


@dataclass(frozen=True)
class ExpelTerms:
    """What an `expel` motion says: whom, the roster it was opened on, and the sealed reason."""

    member: bytes
    size: int
    root: bytes
    reason: dict[
        bytes, bytes
    ]  # member id -> the reason sealed to them ([[id, box], …] on the wire)


def expel_terms(motion: Motion) -> ExpelTerms:
    if motion.kind != "expel" or set(motion.terms) != EXPEL_TERMS:
        raise RuleViolation("invalid_motion", "an expulsion names a member, the roster, a reason")
    member, roster, reason = (motion.terms[k] for k in ("member", "roster", "reason"))
    if (
        not isinstance(member, bytes)
        or len(member) != 32
        or not isinstance(roster, list)
        or len(roster) != 2
        or not isinstance(roster[0], int)
        or isinstance(roster[0], bool)
        or not isinstance(roster[1], bytes)
        or len(roster[1]) != 32
        or not isinstance(reason, list)
    ):
        raise RuleViolation("invalid_motion", "an expulsion's terms are malformed")
    boxes: dict[bytes, bytes] = {}
    for item in reason:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], bytes)
            or not isinstance(item[1], bytes)
            or item[0] in boxes
        ):
            raise RuleViolation("invalid_motion", "an expulsion's reason is malformed")
        boxes[item[0]] = item[1]
    if member in boxes or len(boxes) >= roster[0]:
        raise RuleViolation("invalid_motion", "the reason is sealed to the others, not the subject")
    return ExpelTerms(member, roster[0], roster[1], boxes)


def _reason_info(group: bytes, subject: bytes, recipient: bytes) -> bytes:
    return labels.EXPEL_REASON + group + subject + recipient


def make_expel_motion(
    key: IdentityKey, network: bytes, state: RosterState, member: bytes, reason: str, time: int
) -> Motion:
    """A motion to expel `member` from the group of `state`, its reason sealed to the others."""
    if member == key.public_key().member_id:
        raise RuleViolation("not_allowed", "a member can't move their own expulsion")
    state.member(member)
    if not 1 <= len(reason) <= MAX_REASON_CHARS:
        raise RuleViolation("invalid_motion", f"a reason is 1 to {MAX_REASON_CHARS} characters")
    text = reason.encode()
    sealed: list[Value] = []
    for other in sorted(state.members.values(), key=lambda m: m.member_id):
        if other.member_id == member:
            continue
        public = KemPublicKey.from_bytes(KemSuite(other.kem_suite), other.kem_public)
        box = seal(public, text, _reason_info(state.group, member, other.member_id))
        sealed.append([other.member_id, box])
    terms: dict[str, Value] = {
        "member": member,
        "roster": [len(state.members), roster_root(state.members.values())],
        "reason": sealed,
    }
    return make_motion(key, network, state, "expel", terms, time)


def open_reason(motion: Motion, me: bytes, kem: KemPrivateKey) -> str | None:
    """The expulsion's reason as sealed to me, or None if none is sealed to me or mine does
    not open (a damaged box reads as no reason: the motion itself is signed, the reason is
    only what members are told)."""
    terms = expel_terms(motion)
    box = terms.reason.get(me)
    if box is None:
        return None
    try:
        return open_sealed(kem, box, _reason_info(motion.group, terms.member, me)).decode()
    except (DecryptionFailed, UnicodeDecodeError):
        return None


def check_expel_commitment(state: RosterState, motion: Motion) -> ExpelTerms:
    """The expulsion's roster commitment is this state's, and its subject is on it."""
    terms = expel_terms(motion)
    if motion.group != state.group:
        raise RuleViolation("wrong_group", "this motion is for another group")
    state.member(terms.member)
    if (terms.size, terms.root) != (len(state.members), roster_root(state.members.values())):
        raise RuleViolation(
            "stale_roster", "the roster changed since this motion was opened: open it again"
        )
    return terms


def expulsion_needed(rules: GroupRules, size: int) -> int:
    """Signatures an expulsion needs in a group of `size` (the subject's never counts)."""
    return quorum_of(rules.policy.expulsion_quorum, max(size - 1, 1))


def expulsion_grounds(
    state: RosterState, motion: Motion, signatures: Sequence[Statement]
) -> dict[str, Value]:
    """The `grounds` fields of the revocation that carries out `motion` in `state`."""
    signers = [motion.statement.author, *(s.author for s in signatures)]
    terms = expel_terms(motion)
    proofs: list[Value] = [
        entry_value(state.members[m], prove(state.members.values(), m))
        for m in [*signers, terms.member]
    ]
    return {
        "grounds": "expelled",
        "motion": pack(motion.statement),
        "signatures": [pack(s) for s in signatures],
        "proofs": proofs,
    }


@dataclass(frozen=True)
class Grounds:
    """A revocation's checked grounds: of which kind, and for an expulsion, its motion."""

    kind: str
    motion: Motion | None = None
    signers: frozenset[bytes] = frozenset()
    holder: bytes | None = None


def check_grounds(statement: Statement, subject: bytes, rules: GroupRules) -> Grounds:
    """Raise unless the revocation `statement` of `subject` proves its grounds: RuleViolation
    for a rule, InvalidStatement/InvalidSignature for a carried statement that does not
    verify (every caller catches CryptoError)."""
    kind = statement.fields.get("grounds", "steward")
    if kind == "steward":
        if statement.author not in rules.stewards:
            raise RuleViolation("not_allowed", "only a steward revokes a member on their word")
        return Grounds("steward")
    network = statement.network or b""
    if kind == "self":
        inner = unpack(statement.fields.get("self"), "self-revocation", network)
        holder = get_bytes(inner.fields, "holder", 32)
        if inner.author != subject:
            raise RuleViolation("wrong_member", "a self-revocation is signed by its subject")
        if statement.author != holder:
            raise RuleViolation(
                "not_holder", "only the member who holds a self-revocation publishes it"
            )
        return Grounds("self", holder=holder)
    if kind == "expelled":
        return _check_expulsion(statement, subject, network, rules)
    raise RuleViolation("invalid_statement", f"unknown grounds {kind!r}")


def _check_expulsion(
    statement: Statement, subject: bytes, network: bytes, rules: GroupRules
) -> Grounds:
    motion = parse_motion(unpack(statement.fields.get("motion"), "motion", network))
    terms = expel_terms(motion)
    if terms.member != subject:
        raise RuleViolation("wrong_member", "the expulsion is of another member")
    raw = statement.fields.get("signatures")
    if not isinstance(raw, list) or len(raw) > terms.size:
        raise RuleViolation("invalid_motion", "an expulsion carries its signatures")
    signatures = [unpack(s, "motion-sign", network) for s in raw]
    keys = {motion.statement.author: motion.statement.author_key}
    for signature in signatures:
        if get_bytes(signature.fields, "motion", 32) != motion.id:
            raise RuleViolation("invalid_motion", "a signature is for another motion")
        if signature.author in keys:
            raise RuleViolation("invalid_motion", "a member signs a motion once")
        keys[signature.author] = signature.author_key
    if subject in keys:
        raise RuleViolation("not_allowed", "the subject's signature never counts")
    entries: dict[bytes, Entry] = parse_entries(statement.fields.get("proofs"), terms.size + 1)
    for member, key in [*keys.items()]:
        entry = _proven(entries, member, terms)
        if entry.member.key != key:
            raise RuleViolation("invalid_proof", "a signer signed with another key")
    _proven(entries, subject, terms)
    needed = expulsion_needed(rules, terms.size)
    if len(keys) < needed:
        raise RuleViolation(
            "quorum_not_reached", f"{len(keys)} of the {needed} signatures needed to expel"
        )
    if statement.author not in keys:
        raise RuleViolation("not_allowed", "an expulsion is published by one of its signers")
    if statement.time < max([motion.statement.time, *(s.time for s in signatures)]):
        raise RuleViolation("invalid_event", "the revocation is older than a signature it carries")
    return Grounds("expelled", motion, frozenset(keys))


def _proven(entries: dict[bytes, Entry], member: bytes, terms: ExpelTerms) -> Entry:
    entry = entries.get(member)
    if entry is None:
        raise RuleViolation("invalid_proof", "a member is not shown on the committed roster")
    verify_proof(terms.root, terms.size, entry.member, entry.proof)
    return entry


def make_self_revocation(key: IdentityKey, network: bytes, holder: bytes, time: int) -> Statement:
    """My own revocation, signed now, for `holder` to publish if my device is seized."""
    if holder == key.public_key().member_id:
        raise RuleViolation("not_allowed", "name another member to hold your revocation")
    return sign_statement(key, "self-revocation", network, time, {"holder": holder})


def _duress_info(network: bytes, maker: bytes, holder: bytes) -> bytes:
    return labels.DURESS_BOX + network + maker + holder


def seal_self_revocation(held: Statement, holder_kem: KemPublicKey) -> bytes:
    """The self-revocation sealed for its holder alone (carried inside a cell message)."""
    network = held.network or b""
    holder = get_bytes(held.fields, "holder", 32)
    return seal(holder_kem, encode(pack(held)), _duress_info(network, held.author, holder))


def open_self_revocation(
    box: bytes, network: bytes, maker: bytes, me: bytes, kem: KemPrivateKey
) -> Statement:
    """A self-revocation `maker` sealed for me: checked to be theirs, naming me its holder."""
    packed = decode(open_sealed(kem, box, _duress_info(network, maker, me)))
    held = unpack(packed, "self-revocation", network)
    if held.author != maker or get_bytes(held.fields, "holder", 32) != me:
        raise RuleViolation("wrong_member", "a self-revocation names another maker or holder")
    return held


# --- Emergency freeze ------------------------------------------------------------------
#
# A few cellmates (the policy's `freeze_signers`, default 2) suspend a member at
# once by a `freeze` roster event carrying their motion and signatures: the
# member stays on the roster but is out of every epoch sealed from then on
# (RosterState.readers) and signs nothing the group accepts. It ends by an
# `unfreeze` with the same count of signatures, by an expulsion, or by
# lapsing: an `unfreeze` without a motion, by any member (the subject too),
# signed at least `freeze_seconds` after the freeze. A frozen member signs no
# freeze, no unfreeze and nothing else.

FREEZE_KINDS = ("freeze", "unfreeze")


def freeze_subject(motion: Motion) -> bytes:
    if motion.kind not in FREEZE_KINDS or set(motion.terms) != {"member"}:
        raise RuleViolation("invalid_motion", "a freeze names the member it freezes or lifts")
    return get_bytes(motion.terms, "member", 32)


def make_freeze_motion(
    key: IdentityKey, network: bytes, state: RosterState, member: bytes, kind: str, time: int
) -> Motion:
    """A motion to freeze `member` (kind `freeze`) or to lift their freeze (`unfreeze`)."""
    return make_motion(key, network, state, kind, {"member": member}, time)


def freeze_signers(
    state: RosterState, subject: bytes, rules: GroupRules
) -> tuple[frozenset[bytes], int]:
    """Who may sign a freeze of `subject` (members neither frozen nor the subject) and how
    many must: the policy's count, or all of them in a group too small for it."""
    allowed = frozenset(state.members) - frozenset(state.frozen) - {subject}
    return allowed, max(1, min(rules.policy.freeze_signers, len(allowed)))


def check_freeze_opening(state: RosterState, motion: Motion) -> None:
    subject = freeze_subject(motion)
    state.member(subject)
    opener = motion.statement.author
    if opener == subject or opener in state.frozen:
        raise RuleViolation("not_allowed", "a frozen member, or the subject, opens no freeze")
    if motion.kind == "freeze" and subject in state.frozen:
        raise RuleViolation("already_frozen", "this member is frozen already")
    if motion.kind == "unfreeze" and subject not in state.frozen:
        raise RuleViolation("not_frozen", "this member is not frozen")


def apply_freeze(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    if "link" in event.fields:  # a cell's freeze of its seat holder, carried to the council
        subject, carried = council_freeze(state, event, network, rules, "freeze")
        if subject in state.frozen:
            raise RuleViolation("already_frozen", "this member is frozen already")
        return replace(
            state,
            frozen={**state.frozen, subject: event.time},
            changed_since_epoch=True,
            motions_done=state.motions_done | {carried},
        )
    motion = _carried_freeze(state, event, network, rules, "freeze")
    subject = freeze_subject(motion)
    if get_bytes(event.fields, "member", 32) != subject:
        raise RuleViolation("wrong_member", "the event names another member than its motion")
    return replace(
        state,
        frozen={**state.frozen, subject: event.time},
        changed_since_epoch=True,
        motions_done=state.motions_done | {motion.id},
    )


def apply_unfreeze(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    subject = get_bytes(event.fields, "member", 32)
    since = state.frozen.get(subject)
    if since is None:
        raise RuleViolation("not_frozen", "this member is not frozen")
    done = state.motions_done
    if "link" in event.fields:
        _, carried = council_freeze(state, event, network, rules, "unfreeze")
        done = done | {carried}
    elif "motion" in event.fields:
        motion = _carried_freeze(state, event, network, rules, "unfreeze")
        if freeze_subject(motion) != subject:
            raise RuleViolation("wrong_member", "the motion lifts another member's freeze")
        done = done | {motion.id}
    elif event.time < since + rules.policy.freeze_seconds:
        raise RuleViolation(
            "not_lapsed", "a freeze lapses only once its window has passed, or by a motion"
        )
    frozen = {m: t for m, t in state.frozen.items() if m != subject}
    return replace(state, frozen=frozen, changed_since_epoch=True, motions_done=done)


def council_freeze(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, kind: str
) -> tuple[bytes, bytes]:
    """A seat holder's cell froze them (or lifted it): its roster event, carried to the council.

    The council checks it against what it holds of that cell, the seat's
    anchor (the roster its last accepted election committed to): the event
    is the cell's `freeze`/`unfreeze` of this seat's holder carrying its
    motion, and the policy's `freeze_signers` of its signers (never the
    holder) are each proven on that roster with the key that signed. Members
    who joined the cell since that election do not count here. Each carried motion is
    taken once (an old freeze, lifted since, can't be replayed). The holder, and the
    carried motion's id.
    """
    if state.kind != "council":
        raise RuleViolation("invalid_event", "only a council takes a freeze carried from a cell")
    member = get_bytes(event.fields, "member", 32)
    carried = unpack(event.fields.get("link"), "roster", network)
    group = get_bytes(carried.fields, "group", GROUP_ID_BYTES)
    seat = state.seats.get(group)
    if seat is None or seat.holder != member or get_str(carried.fields, "op", 16) != kind:
        raise RuleViolation(
            "invalid_event", f"a council takes a {kind} of a seat's holder from that seat's group"
        )
    motion = parse_motion(unpack(carried.fields.get("motion"), "motion", network))
    if motion.id in state.motions_done:
        raise RuleViolation("stale_motion", f"this {kind} was carried here already")
    if (
        motion.kind != kind
        or motion.group != group
        or freeze_subject(motion) != member
        or get_bytes(carried.fields, "member", 32) != member
    ):
        raise RuleViolation("invalid_motion", f"the carried {kind} is about another member")
    raw = carried.fields.get("signatures")
    if not isinstance(raw, list) or len(raw) > seat.size:
        raise RuleViolation("invalid_motion", f"a {kind} carries its signatures")
    keys = {motion.statement.author: motion.statement.author_key}
    for item in raw:
        signature = unpack(item, "motion-sign", network)
        if get_bytes(signature.fields, "motion", 32) != motion.id or signature.author in keys:
            raise RuleViolation("invalid_motion", "a signature is for another motion, or twice")
        keys[signature.author] = signature.author_key
    if member in keys:
        raise RuleViolation("not_allowed", "the subject's signature never counts")
    entries = parse_entries(event.fields.get("proofs"), seat.size)
    proven = 0
    for signer, key in keys.items():
        entry = entries.get(signer)
        if entry is None:
            continue  # joined the cell since the seat's election: not counted here
        verify_proof(seat.root, seat.size, entry.member, entry.proof)
        if entry.member.key != key:
            raise RuleViolation("invalid_proof", "a signer signed with another key")
        proven += 1
    needed = max(1, min(rules.policy.freeze_signers, seat.size - 1))
    if proven < needed:
        raise RuleViolation(
            "quorum_not_reached",
            f"{proven} of the {needed} signers shown on the roster of the seat's election",
        )
    return member, motion.id


def carried_signed(
    state: RosterState, event: Statement, network: bytes, kind: str
) -> tuple[Motion, frozenset[bytes], list[Statement]]:
    """The motion of `kind` an event of this group carries, not yet carried out; who signed
    it (the opener included), each once; and the signatures. Who may sign, and how many
    must, is the caller's."""
    motion = parse_motion(unpack(event.fields.get("motion"), "motion", network))
    if motion.kind != kind or motion.group != state.group:
        raise RuleViolation(
            "invalid_motion", f"a {kind} event carries a {kind} motion of its group"
        )
    if motion.id in state.motions_done:
        raise RuleViolation("stale_motion", "this motion has already been carried out")
    raw = event.fields.get("signatures")
    if not isinstance(raw, list) or len(raw) > len(state.members):
        raise RuleViolation("invalid_motion", f"a {kind} carries its signatures")
    signatures = [unpack(s, "motion-sign", network) for s in raw]
    signed = {motion.statement.author}
    for signature in signatures:
        if get_bytes(signature.fields, "motion", 32) != motion.id or signature.author in signed:
            raise RuleViolation("invalid_motion", "a signature is for another motion, or twice")
        signed.add(signature.author)
    return motion, frozenset(signed), signatures


def _carried_freeze(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, kind: str
) -> Motion:
    motion, signed, signatures = carried_signed(state, event, network, kind)
    check_freeze_opening(state, motion)
    allowed, needed = freeze_signers(state, freeze_subject(motion), rules)
    if not signed <= allowed:
        raise RuleViolation(
            "not_allowed", "only members on the roster, neither frozen nor the subject, sign it"
        )
    if len(signed) < needed:
        raise RuleViolation(
            "quorum_not_reached", f"{len(signed)} of the {needed} signatures a {kind} needs"
        )
    if event.time < max([motion.statement.time, *(s.time for s in signatures)]):
        raise RuleViolation("invalid_event", "the event is older than a signature it carries")
    return motion
