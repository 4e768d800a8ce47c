"""Subtree review and sponsor accountability after an expulsion.

The rule this module keeps: what an expulsion does to the people around the
expelled member X is decided by roster events of their own cells, each
carrying X's revocation (its grounds checked by crypto/exclusion.py), so
every member's client replays the same consequences from the log:

- `review` (by any member, once per revocation in a log): X's invitees on
  this roster (direct ones; the whole subtree under the policy's
  `review_subtree`) are under review from the event's time: they can't
  admit anyone or be elected. X's sponsor (their certificate's issuer), if
  on this roster, is on hold: they admit no one until the cell restores them.
- `clear` (a motion): the policy's `vouches` count of members of the roster
  outside X's subtree, neither under review, suspended nor frozen, sign a
  `clear` motion for a member under review (or suspended): their fresh
  vouches end the review, a suspension too.
- `suspend` (by any member): a member still under review once
  `review_seconds` have passed since the review: out of every epoch from
  then on (RosterState.readers) and signing nothing, as a frozen member,
  until cleared.
- `restore` (a motion with the expulsion quorum of the members other than
  the sponsor): the sponsor's hold is lifted, but they admit no one whose
  certificate is signed before the policy's `sponsor_cooldown_seconds`
  have passed since the hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from crypto.chains import MAX_CHAIN_LENGTH, parse_admission, parse_revocation
from crypto.errors import RuleViolation
from crypto.exclusion import carried_signed, check_grounds, expulsion_needed
from crypto.keys import IdentityKey
from crypto.motions import Motion, make_motion
from crypto.network import GROUP_ID_BYTES
from crypto.roster_state import GroupRules, RosterState
from crypto.statements import Statement, get_bytes, unpack


def direct_issuer(
    lines: Mapping[bytes, frozenset[bytes]], member: bytes, stewards: frozenset[bytes] = frozenset()
) -> bytes | None:
    """Who admitted `member`, from the invite lines a log holds (None for a steward, or when
    the log can't tell).

    A line is the set of issuers from a steward down to the member, one per depth; the one
    who admitted the member is the deepest, at depth len(line) - 1. An issuer's depth is the
    size of their own line where the log holds it, 0 for a steward; a cell a split made
    holds the lines of those it moved only, so where one issuer's depth is unknown and no
    known one is the deepest, that one is.
    """
    line = lines.get(member, frozenset())
    deepest = len(line) - 1
    unknown = []
    for issuer in line:
        depth = 0 if issuer in stewards else len(lines[issuer]) if issuer in lines else None
        if depth == deepest:
            return issuer
        if depth is None:
            unknown.append(issuer)
    return unknown[0] if len(unknown) == 1 else None


def reviewed_by(state: RosterState, expelled: bytes, rules: GroupRules) -> frozenset[bytes]:
    """The current members an expulsion of `expelled` puts under review in this log."""
    found = set()
    for member in state.members:
        if member == expelled:
            continue
        line = state.lines.get(member, frozenset())
        if rules.policy.review_subtree and expelled in line:
            found.add(member)
        elif direct_issuer(state.lines, member, rules.stewards) == expelled:
            found.add(member)
    return frozenset(found)


def apply_review(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    revocation = parse_revocation(unpack(event.fields.get("revocation"), "revocation", network))
    grounds = check_grounds(revocation.statement, revocation.subject, rules)
    if grounds.kind != "expelled":
        raise RuleViolation("invalid_event", "only an expulsion opens a review")
    if revocation.statement.id in state.reviewed:
        raise RuleViolation("stale_motion", "this expulsion was reviewed here already")
    expelled = revocation.subject
    invitees = reviewed_by(state, expelled, rules)
    sponsor = (
        direct_issuer(state.lines, expelled, rules.stewards) if expelled in state.lines else None
    )
    on_hold = sponsor is not None and sponsor in state.members
    if not invitees and not on_hold:
        raise RuleViolation("invalid_event", "no one on this roster is touched by the expulsion")
    review = {**state.review, **{m: (event.time, expelled) for m in invitees}}
    holds = dict(state.holds)
    if on_hold and sponsor is not None:
        holds[sponsor] = (revocation.statement.time, False)
    return replace(
        state,
        review=review,
        holds=holds,
        reviewed=state.reviewed | {revocation.statement.id},
    )


def may_revouch(state: RosterState, voucher: bytes, expelled: bytes) -> bool:
    """A member outside the expelled member's subtree, neither reviewed, suspended nor frozen."""
    return (
        voucher in state.members
        and voucher != expelled
        and expelled not in state.lines.get(voucher, frozenset())
        and voucher not in state.review
        and voucher not in state.suspended
        and voucher not in state.frozen
    )


def make_clear_motion(
    key: IdentityKey, network: bytes, state: RosterState, member: bytes, time: int
) -> Motion:
    """Fresh vouches for `member`, under review: a `clear` motion its signers vouch with."""
    return make_motion(key, network, state, "clear", {"member": member}, time)


def clear_subject(motion: Motion) -> bytes:
    if motion.kind != "clear" or set(motion.terms) != {"member"}:
        raise RuleViolation("invalid_motion", "a clear names the member it vouches for afresh")
    return get_bytes(motion.terms, "member", 32)


def clear_quorum(
    state: RosterState, member: bytes, rules: GroupRules
) -> tuple[frozenset[bytes], int]:
    """Who may vouch afresh for `member` (outside the expelled member's subtree) and how many."""
    under = state.review.get(member)
    if under is None:
        raise RuleViolation("not_in_review", "this member is not under review")
    allowed = frozenset(m for m in state.members if may_revouch(state, m, under[1]))
    return allowed, max(1, rules.policy.vouches)


def check_clear_opening(state: RosterState, motion: Motion, rules: GroupRules) -> None:
    member = clear_subject(motion)
    allowed, _ = clear_quorum(state, member, rules)
    if motion.statement.author not in allowed:
        raise RuleViolation(
            "not_allowed", "fresh vouches come from members outside the expelled member's subtree"
        )


def apply_clear(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    motion, signed = _carried(state, event, network, "clear")
    member = clear_subject(motion)
    allowed, needed = clear_quorum(state, member, rules)
    if not signed <= allowed:
        raise RuleViolation(
            "not_allowed",
            "fresh vouches come once each from members outside the expelled member's subtree",
        )
    if len(signed) < needed:
        raise RuleViolation("quorum_not_reached", f"{len(signed)} of the {needed} fresh vouches")
    review = {m: v for m, v in state.review.items() if m != member}
    return replace(
        state,
        review=review,
        suspended=state.suspended - {member},
        changed_since_epoch=state.changed_since_epoch or member in state.suspended,
        motions_done=state.motions_done | {motion.id},
    )


def _carried(
    state: RosterState, event: Statement, network: bytes, kind: str
) -> tuple[Motion, frozenset[bytes]]:
    motion, signed, _ = carried_signed(state, event, network, kind)
    return motion, signed


def apply_suspend(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    member = get_bytes(event.fields, "member", 32)
    under = state.review.get(member)
    if under is None or member in state.suspended:
        raise RuleViolation("not_in_review", "only a member under review is suspended")
    if event.time < under[0] + rules.policy.review_seconds:
        raise RuleViolation("not_lapsed", "the review window is still open")
    return replace(state, suspended=state.suspended | {member}, changed_since_epoch=True)


def make_restore_motion(
    key: IdentityKey, network: bytes, state: RosterState, sponsor: bytes, time: int
) -> Motion:
    """A motion to let `sponsor`, on hold since their invitee was expelled, admit again."""
    return make_motion(key, network, state, "restore", {"member": sponsor}, time)


def restore_subject(motion: Motion) -> bytes:
    if motion.kind != "restore" or set(motion.terms) != {"member"}:
        raise RuleViolation("invalid_motion", "a restore names the sponsor it restores")
    return get_bytes(motion.terms, "member", 32)


def restore_quorum(
    state: RosterState, sponsor: bytes, rules: GroupRules
) -> tuple[frozenset[bytes], int]:
    signers = frozenset(state.members) - {sponsor}
    return signers, expulsion_needed(rules, len(state.members))


def check_restore_opening(state: RosterState, motion: Motion) -> None:
    sponsor = restore_subject(motion)
    hold = state.holds.get(sponsor)
    if hold is None or hold[1]:
        raise RuleViolation("not_on_hold", "this member's admissions are not on hold")
    if motion.statement.author == sponsor:
        raise RuleViolation("not_allowed", "a sponsor does not restore themself")


def apply_restore(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    motion, signed = _carried(state, event, network, "restore")
    check_restore_opening(state, motion)
    sponsor = restore_subject(motion)
    signers, needed = restore_quorum(state, sponsor, rules)
    if not signed <= signers:
        raise RuleViolation("not_allowed", "only other members of the roster sign a restore")
    if len(signed) < needed:
        raise RuleViolation("quorum_not_reached", f"{len(signed)} of the {needed} signatures")
    since, _ = state.holds[sponsor]
    return replace(
        state,
        holds={**state.holds, sponsor: (since, True)},
        motions_done=state.motions_done | {motion.id},
    )


def check_may_admit(
    state: RosterState, issuer: bytes, certified_at: int, rules: GroupRules
) -> None:
    """Raise unless `issuer` may admit on a certificate signed at `certified_at`."""
    if issuer in state.review or issuer in state.suspended:
        raise RuleViolation("in_review", "a member under review admits no one")
    hold = state.holds.get(issuer)
    if hold is None:
        return
    since, restored = hold
    if not restored:
        raise RuleViolation(
            "on_hold",
            "the sponsor of an expelled member admits no one until their cell restores it",
        )
    if certified_at < since + rules.policy.sponsor_cooldown_seconds:
        raise RuleViolation("on_hold", "the sponsor's cool-down after an expulsion has not passed")


def check_seat_review(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules
) -> RosterState:
    """A council seat's holder came under review: their inviter (or, under the policy's
    `review_subtree`, someone up their invite line) was expelled. They lose the seat, as
    they lose the right to be elected; their cell may elect again (them too, once cleared).

    The council checks it from the event alone: the expulsion's revocation (its grounds,
    crypto/exclusion.py), and the holder's admission certificates from their own up to
    one the expelled member issued, each signed before the revocation, the first over the
    key the council seats; and this expulsion was not carried here before. The state with
    it noted.
    """
    if state.kind != "council":
        raise RuleViolation("invalid_event", "a member comes under review in their cell")
    member = get_bytes(event.fields, "member", 32)
    group = get_bytes(event.fields, "seat_group", GROUP_ID_BYTES)
    seat = state.seats.get(group)
    if seat is None or seat.holder != member:
        raise RuleViolation("invalid_event", "the member holds no seat for that group")
    revocation = parse_revocation(unpack(event.fields.get("revocation"), "revocation", network))
    if check_grounds(revocation.statement, revocation.subject, rules).kind != "expelled":
        raise RuleViolation("invalid_event", "only an expulsion opens a review")
    raw = event.fields.get("chain")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_CHAIN_LENGTH:
        raise RuleViolation("invalid_event", "a review names the holder's certificates")
    chain = [parse_admission(unpack(item, "admission", network)) for item in raw]
    if chain[0].subject_key != state.members[member].key:
        raise RuleViolation("wrong_member", "the certificate admits another key")
    for link, upper in zip(chain, chain[1:], strict=False):
        if upper.subject != link.issuer:
            raise RuleViolation("invalid_event", "the certificates do not form a line")
    if chain[-1].issuer != revocation.subject:
        raise RuleViolation("invalid_event", "the line does not lead to the expelled member")
    if len(chain) > 1 and not rules.policy.review_subtree:
        raise RuleViolation(
            "invalid_event", "only the expelled member's direct invitees are reviewed"
        )
    if any(link.statement.time >= revocation.statement.time for link in chain):
        raise RuleViolation("invalid_event", "a certificate signed after the expulsion")
    # Once per expulsion here: the same review can't unseat the member again once their
    # cell, having cleared them, elects them anew.
    if revocation.statement.id in state.reviewed:
        raise RuleViolation("stale_motion", "this expulsion's review was carried here already")
    return replace(state, reviewed=state.reviewed | {revocation.statement.id})
