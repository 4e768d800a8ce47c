"""Delegations: how a council checks, without a linked group's roster, who holds its seat.

A linked group G's elections and recalls form a chain of links (its `elect`
and `recall` roster events, crypto/elections.py): each one's motion commits
to G's roster (size and Merkle root, crypto/rostertree.py) and names the
link before it. A council keeps, per seat, the last link it accepted (a
`SeatAnchor`); the rule this module keeps:

- a first link (founding a council, linking a group) is accepted when its
  signers, each proven on the roster it commits to, reach G's quorum of
  that roster, and a cell's roster has at least `cell_min` members: the
  council's vote (and the holder's acceptance) does the rest;
- every later link must follow the anchor (its `prev_link` is the anchor's,
  its seq is higher) and be signed, besides G's quorum of the new roster, by
  a quorum of the anchor's members who have not provably left since: each
  such signer is proven on the anchor's roster too, and each departure is
  G's own signed `remove` (left: by the member; revoked: with a steward's
  revocation) or `split` (every moved member signed it), with the departed
  proven on the anchor's roster. Informants elsewhere, keys that were never
  on G's roster, and old links replayed after a recall all fail here.

What a council member learns of G is in docs/THREAT_MODEL.md: the links'
signer ids and keys, roster sizes, times and seqs, and whoever left between
links; never the rest of G's roster, its names, profiles or messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crypto.chains import parse_revocation
from crypto.encoding import Value
from crypto.errors import RuleViolation
from crypto.keys import IdentityPublicKey
from crypto.motions import Motion, election_terms, parse_motion, split_terms
from crypto.quorum import quorum_of
from crypto.roster_state import GroupRules, RosterMember, SeatAnchor
from crypto.rostertree import MAX_PROOF_HASHES, Proof, verify_proof
from crypto.statements import Statement, get_bytes, get_int, get_str, unpack

MAX_LINKS = 16  # links one seat change may carry
MAX_DEPARTURES = 100


@dataclass(frozen=True)
class Entry:
    """A member shown on a committed roster: the leaf's contents and its place in the tree."""

    member: RosterMember
    proof: Proof


def parse_entries(value: Value, limit: int) -> dict[bytes, Entry]:
    """[[member id, identity key, KEM suite, KEM public key, index, [hashes…]], …] by member id."""
    if not isinstance(value, list) or len(value) > limit:
        raise RuleViolation("invalid_proof", "roster proofs are a list")
    entries: dict[bytes, Entry] = {}
    for item in value:
        if not isinstance(item, list) or len(item) != 6:
            raise RuleViolation("invalid_proof", "a roster proof is malformed")
        member_id, key, suite, kem, index, path = item
        if (
            not isinstance(key, bytes)
            or not isinstance(suite, str)
            or not isinstance(kem, bytes)
            or not isinstance(index, int)
            or not isinstance(path, list)
            or len(path) > MAX_PROOF_HASHES
            or not all(isinstance(h, bytes) for h in path)
        ):
            raise RuleViolation("invalid_proof", "a roster proof is malformed")
        public = IdentityPublicKey(key)
        if public.member_id != member_id or member_id in entries:
            raise RuleViolation("invalid_proof", "a roster proof names another key or twice")
        member = RosterMember(public.member_id, public, suite, kem)
        entries[public.member_id] = Entry(
            member, Proof(index, tuple(h for h in path if isinstance(h, bytes)))
        )
    return entries


def entry_value(member: RosterMember, proof: Proof) -> list[Value]:
    return [
        member.member_id,
        member.key.raw,
        member.kem_suite,
        member.kem_public,
        proof.index,
        list[Value](proof.path),
    ]


def _proven(entries: dict[bytes, Entry], member: bytes, size: int, root: bytes) -> Entry:
    entry = entries.get(member)
    if entry is None:
        raise RuleViolation("invalid_proof", "a signer is not shown on the committed roster")
    verify_proof(root, size, entry.member, entry.proof)
    return entry


@dataclass(frozen=True)
class Link:
    """One verified `elect`/`recall` event of a linked group, with its motion's terms."""

    event: Statement
    motion: Motion
    keys: dict[bytes, IdentityPublicKey]  # each signer's key (the opener included)
    seq: int
    size: int
    root: bytes
    prev: bytes | None
    level: int
    member: bytes

    @property
    def signers(self) -> frozenset[bytes]:
        return frozenset(self.keys)


def parse_link(value: Value, group: bytes, network: bytes, rules: GroupRules) -> Link:
    """An election or recall event of `group`: its motion, signers and their signatures checked."""
    event = unpack(value, "roster", network)
    op = get_str(event.fields, "op", 16)
    if op not in ("elect", "recall") or get_bytes(event.fields, "group", 16) != group:
        raise RuleViolation(
            "invalid_delegation", "a delegation is an election or recall of the group"
        )
    motion = parse_motion(unpack(event.fields.get("motion"), "motion", network))
    terms = election_terms(motion)
    if motion.kind != op or motion.group != group:
        raise RuleViolation("invalid_delegation", "the event carries another motion")
    raw = event.fields.get("signatures")
    if not isinstance(raw, list) or len(raw) > rules.policy.council_max + rules.policy.cell_max:
        raise RuleViolation("invalid_delegation", "a delegation carries its signatures")
    signatures = [unpack(s, "motion-sign", network) for s in raw]
    authors = [s.author for s in signatures]
    if (
        any(get_bytes(s.fields, "motion", 32) != motion.id for s in signatures)
        or len(set(authors)) != len(authors)
        or motion.statement.author in authors
    ):
        raise RuleViolation(
            "invalid_delegation", "a signature is for another motion or counted twice"
        )
    if any(s.time > event.time for s in signatures) or motion.statement.time > event.time:
        raise RuleViolation("invalid_delegation", "the event is older than a signature it carries")
    keys = {motion.statement.author: motion.statement.author_key}
    keys.update((s.author, s.author_key) for s in signatures)
    return Link(
        event,
        motion,
        keys,
        get_int(event.fields, "seq"),
        terms.size,
        terms.root,
        terms.prev_link,
        terms.level,
        terms.member,
    )


def _check_own_quorum(link: Link, entries: dict[bytes, Entry], rules: GroupRules) -> None:
    """The link's signers are on the roster it commits to and reach the group's quorum of it."""
    for signer in link.signers:
        entry = _proven(entries, signer, link.size, link.root)
        if entry.member.key != link.keys[signer]:
            raise RuleViolation("invalid_proof", "a signer's key is not the one on the roster")
    needed = quorum_of(rules.policy.election_quorum, link.size)
    if len(link.signers) < needed:
        raise RuleViolation(
            "quorum_not_reached",
            f"the delegation carries {len(link.signers)} of {needed} signatures",
        )


def holder_of(
    link: Link,
    entries: dict[bytes, Entry],
    bundle_member: RosterMember | None,
    *,
    seated: bool = True,
) -> bytes | None:
    """An election's new holder, shown on its roster with the keys of their bundle; None for a
    recall. `seated=False`: an election a later link of the same seat change undoes (its
    holder never takes the seat, so no keys are shown; the next link must recall them)."""
    if link.motion.kind == "recall":
        return None
    if not seated:
        return link.member
    if bundle_member is None or bundle_member.member_id != link.member:
        raise RuleViolation("invalid_delegation", "the seat goes to the member the group elected")
    entry = _proven(entries, link.member, link.size, link.root)
    if entry.member != bundle_member:
        raise RuleViolation(
            "invalid_delegation", "the holder's keys are not the ones the group has"
        )
    return link.member


def first_link(
    link: Link,
    entries: dict[bytes, Entry],
    bundle_member: RosterMember | None,
    level: int,
    rules: GroupRules,
) -> SeatAnchor:
    """A group's delegation seen by a council for the first time (founding it, or linking)."""
    if link.level != level or link.motion.kind != "elect":
        raise RuleViolation(
            "invalid_delegation", f"a seat is held by an elected member of a level-{level} group"
        )
    smallest = rules.policy.cell_min if level == 0 else 1
    if link.size < smallest:
        raise RuleViolation("invalid_delegation", f"a linked group has at least {smallest} members")
    _check_own_quorum(link, entries, rules)
    holder = holder_of(link, entries, bundle_member)
    group = get_bytes(link.event.fields, "group", 16)
    return SeatAnchor(group, link.motion.id, link.seq, level, link.size, link.root, holder)


def next_link(
    anchor: SeatAnchor,
    link: Link,
    new: dict[bytes, Entry],
    old: dict[bytes, Entry],
    departures: Sequence[tuple[Statement, dict[bytes, Entry]]],
    bundle_member: RosterMember | None,
    rules: GroupRules,
    *,
    last: bool = True,
) -> SeatAnchor:
    """The anchor after `link`, which must follow it; raise RuleViolation otherwise.

    `last`: the link ends the seat change, so an elected holder is seated (their keys shown).
    """
    if link.prev != anchor.link or link.seq <= anchor.seq or link.level != anchor.level:
        raise RuleViolation("stale_motion", "the delegation does not follow the seat's last one")
    _check_own_quorum(link, new, rules)
    departed = _departed(anchor, link, departures, rules)
    staying = anchor.size - len(departed)
    if staying < 1:
        raise RuleViolation("invalid_delegation", "nobody from the last election is shown staying")
    continuing = set()
    for signer in link.signers - departed:
        if signer in old:
            _proven(old, signer, anchor.size, anchor.root)
            continuing.add(signer)
    needed = quorum_of(rules.policy.election_quorum, staying)
    if len(continuing) < needed:
        raise RuleViolation(
            "quorum_not_reached",
            f"{len(continuing)} of the {needed} signatures needed from members present at the "
            "group's last election",
        )
    if link.motion.kind == "recall" and anchor.holder not in (None, link.member):
        raise RuleViolation(
            "not_spokesperson", "the recall is of someone else than the seat holder"
        )
    if link.motion.kind == "elect" and anchor.holder is not None and anchor.holder not in departed:
        raise RuleViolation("has_spokesperson", "the seat's holder was not recalled")
    holder = holder_of(link, new, bundle_member, seated=last)
    return SeatAnchor(
        anchor.group, link.motion.id, link.seq, anchor.level, link.size, link.root, holder
    )


def _departed(
    anchor: SeatAnchor,
    link: Link,
    departures: Sequence[tuple[Statement, dict[bytes, Entry]]],
    rules: GroupRules,
) -> frozenset[bytes]:
    """Members of the anchor's roster who provably left the group between the two links."""
    if len(departures) > MAX_DEPARTURES:
        raise RuleViolation("invalid_delegation", "too many departures")
    gone: set[bytes] = set()
    network = link.event.network or b""
    for event, entries in departures:
        seq = get_int(event.fields, "seq")
        if get_bytes(event.fields, "group", 16) != anchor.group or not anchor.seq < seq < link.seq:
            raise RuleViolation("invalid_delegation", "a departure is not between the two links")
        leaving = _leaving(event, network, rules)
        for member in leaving:
            entry = _proven(entries, member, anchor.size, anchor.root)
            if event.fields.get("op") == "remove" and event.fields.get("reason") == "left":
                if entry.member.key != event.author_key:
                    raise RuleViolation(
                        "invalid_delegation", "a departure was signed by someone else"
                    )
        gone |= leaving
    return frozenset(gone)


def leaving(event: Statement, rules: GroupRules) -> frozenset[bytes]:
    """The members a linked group's event shows leaving in a way a council accepts as a
    departure (a `remove` they or a steward signed, a `split` they signed); RuleViolation
    for any other event. What a client asks before it carries a departure to a council."""
    return _leaving(event, event.network or b"", rules)


def _leaving(event: Statement, network: bytes, rules: GroupRules) -> frozenset[bytes]:
    op = get_str(event.fields, "op", 16)
    if op == "remove":
        member = get_bytes(event.fields, "member", 32)
        reason = get_str(event.fields, "reason", 16)
        if reason == "left" and event.author == member:
            return frozenset({member})
        if reason in ("revoked", "expelled"):
            revocation = parse_revocation(
                unpack(event.fields.get("revocation"), "revocation", network)
            )
            if revocation.subject == member:
                from crypto.exclusion import check_grounds  # noqa: PLC0415 - imports this module

                check_grounds(revocation.statement, member, rules)
                return frozenset({member})
        raise RuleViolation(
            "invalid_delegation", "a departure is not one the member or a steward signed"
        )
    if op == "split":
        motion = parse_motion(unpack(event.fields.get("motion"), "motion", network))
        if motion.group != get_bytes(event.fields, "group", 16):
            raise RuleViolation("invalid_delegation", "a departure's split is of another group")
        moved, _ = split_terms(motion)
        raw = event.fields.get("signatures")
        signed = {motion.statement.author} | {
            unpack(s, "motion-sign", network).author
            for s in (raw if isinstance(raw, list) else [])
            if get_bytes(unpack(s, "motion-sign", network).fields, "motion", 32) == motion.id
        }
        if not moved <= signed:
            raise RuleViolation("invalid_delegation", "a split's moved members did not all sign it")
        return moved
    raise RuleViolation("invalid_delegation", "a departure is a remove or a split")
