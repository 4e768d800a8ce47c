"""Tests of crypto.councils and crypto.delegations: seats held on a linked group's delegation.

Two cells (every member a steward, so no probation) elect spokespeople; a
council is founded on one delegation, links the other, and follows each
cell's later elections and recalls from its own log, without the cells'.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from crypto import councils
from crypto.chains import make_admission
from crypto.delegations import entry_value
from crypto.elections import make_elect_motion, make_recall_motion
from crypto.errors import RuleViolation
from crypto.exclusion import make_freeze_motion
from crypto.keys import IdentityKey
from crypto.motions import Motion, make_split_motion, sign_motion, split_event_fields
from crypto.network import Policy
from crypto.roster import GroupRules, RosterState, apply, make_group, sign_event
from crypto.roster_state import RosterMember
from crypto.rostertree import prove
from crypto.statements import Statement, pack, unpack
from tests.crypto.helpers import T0, certified_add, fixed_bytes, fixed_key
from tests.crypto.test_roster import NETWORK, bundle, remove_event

KEYS = {name: fixed_key(f"council {name}") for name in "ABCDEFGHXYZ"}
A, B, C, D, E, F, G, H, X, Y, Z = KEYS.values()
RULES = GroupRules(
    Policy(cell_min=2, cell_max=12, vouches=1, vetting_seconds=0, probation_seconds=0),
    frozenset(k.member_id for k in KEYS.values()),
)
NOW = T0 + 1000


@dataclass
class Cell:
    """A cell's state, with every event so far (what its members' clients hold)."""

    state: RosterState
    events: list[Statement] = field(default_factory=list)
    clock: int = NOW

    def tick(self) -> int:
        self.clock += 10
        return self.clock

    def post(self, by: IdentityKey, op: str, fields: dict) -> Statement:  # type: ignore[type-arg]
        event = sign_event(by, NETWORK, self.state, op, self.tick(), fields)
        self.state = apply(self.state, event, rules=RULES)
        self.events.append(event)
        return event

    def motion_event(self, op: str, motion: Motion, signers: list[IdentityKey]) -> Statement:
        """`signers` (the opener among them or not: opening is signing) sign; the first posts."""
        opener = motion.statement.author
        signatures = [
            sign_motion(k, NETWORK, motion, self.tick()) for k in signers if k.member_id != opener
        ]
        return self.post(signers[0], op, split_event_fields(motion, signatures))

    def elect(self, who: IdentityKey, opener: IdentityKey, *signers: IdentityKey) -> Statement:
        motion = make_elect_motion(opener, NETWORK, self.state, who.member_id, self.tick())
        return self.motion_event("elect", motion, list(signers) or [opener])

    def recall(self, opener: IdentityKey, *signers: IdentityKey) -> Statement:
        motion = make_recall_motion(opener, NETWORK, self.state, self.tick())
        return self.motion_event("recall", motion, list(signers))


def members_at(cell_: Cell, event: Statement) -> list[RosterMember]:
    """The roster an event of the cell's log was applied to."""
    state = None
    for e in [_create_of(cell_), *cell_.events]:
        if e.id == event.id:
            assert state is not None
            return list(state.members.values())
        state = apply(state, e, rules=RULES)
    raise AssertionError("not in the log")


_CREATES: dict[bytes, Statement] = {}


def _create_of(cell_: Cell) -> Statement:
    return _CREATES[cell_.state.group]


def tracked(*keys: IdentityKey, name: str) -> Cell:
    group = fixed_bytes(f"cell {name}", 16)
    made = make_group(keys[0], NETWORK, NOW, [bundle(k) for k in keys], group=group, rules=RULES)
    _CREATES[group] = made.statement
    return Cell(made.state)


def signers_of(event: Statement) -> set[bytes]:
    from crypto.delegations import parse_link

    return set(parse_link(pack(event), event.fields["group"], NETWORK, RULES).signers)  # type: ignore[arg-type]


def first_seat(cell_: Cell, event: Statement, holder: IdentityKey) -> dict:  # type: ignore[type-arg]
    roster = members_at(cell_, event)
    wanted = signers_of(event) | {holder.member_id}
    return councils.seat_evidence(event, councils.link_proofs(roster, wanted), bundle(holder))


def found_council(cell_: Cell, event: Statement, holder: IdentityKey) -> RosterState:
    _, state = councils.make_council(
        holder,
        NETWORK,
        cell_.tick(),
        1,
        bundle(holder),
        cell_.state.group,
        first_seat(cell_, event, holder),
        rules=RULES,
        group=fixed_bytes("council", 16),
    )
    return state


def refused(code: str, action) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuleViolation) as caught:
        action()
    assert caught.value.code == code, caught.value


def test_a_spokesperson_founds_a_council_on_their_cells_delegation() -> None:
    one = tracked(A, B, C, name="one")
    elected = one.elect(A, B, B, C)
    council = found_council(one, elected, A)
    assert council.kind == "council" and council.level == 1
    assert set(council.members) == {A.member_id}
    (seat,) = council.seats.values()
    assert (seat.group, seat.holder, seat.size) == (one.state.group, A.member_id, 3)


def test_a_council_is_founded_only_by_the_member_the_cell_elected() -> None:
    one = tracked(A, B, C, name="one")
    elected = one.elect(A, B, B, C)
    refused("invalid_delegation", lambda: found_council(one, elected, B))


def test_a_delegation_short_of_its_quorum_or_without_proofs_is_refused() -> None:
    one = tracked(A, B, C, D, name="one")
    elected = one.elect(A, B, B, C, D)
    roster = members_at(one, elected)
    # Proofs for only some signers: a signer not shown on the committed roster.
    seat = councils.seat_evidence(
        elected, councils.link_proofs(roster, {A.member_id, B.member_id}), bundle(A)
    )
    refused(
        "invalid_proof",
        lambda: councils.make_council(
            A, NETWORK, NOW + 99, 1, bundle(A), one.state.group, seat, rules=RULES
        ),
    )
    # Proofs whose keys are not the signers': a KEM key swapped in the holder's leaf.
    other = tracked(A, B, C, name="other")
    forged = other.elect(A, B, B, A)  # 2 of 3 signatures: a valid election of its own cell
    seat = first_seat(other, forged, A)
    proofs = seat["proofs"]
    assert isinstance(proofs, list)
    proofs[0] = [*proofs[0][:3], bytes(32), *proofs[0][4:]]
    refused(
        "invalid_proof",
        lambda: councils.make_council(
            A, NETWORK, NOW + 99, 1, bundle(A), other.state.group, seat, rules=RULES
        ),
    )


def two_seats() -> tuple[Cell, Cell, RosterState]:
    one = tracked(A, B, C, name="one")
    two = tracked(D, E, F, name="two")
    council = found_council(one, one.elect(A, B, B, C), A)
    elected = two.elect(D, E, E, F)
    motion = councils.make_link_motion(A, NETWORK, council, two.state.group, two.tick())
    acceptance = councils.make_acceptance(D, NETWORK, council.group, two.state.group, two.tick())
    fields = councils.link_fields(motion, [], acceptance, first_seat(two, elected, D))
    event = sign_event(A, NETWORK, council, "link", two.tick(), fields)
    return one, two, apply(council, event, rules=RULES)


def test_a_council_links_a_group_by_its_quorum_and_the_spokespersons_acceptance() -> None:
    _, two, council = two_seats()
    assert set(council.members) == {A.member_id, D.member_id}
    assert council.seats[two.state.group].holder == D.member_id
    assert council.needs_rekey


def test_a_link_without_the_spokespersons_acceptance_is_refused() -> None:
    one = tracked(A, B, C, name="one")
    two = tracked(D, E, F, name="two")
    council = found_council(one, one.elect(A, B, B, C), A)
    elected = two.elect(D, E, E, F)
    motion = councils.make_link_motion(A, NETWORK, council, two.state.group, two.tick())
    for signer, group in ((E, two.state.group), (D, one.state.group)):
        acceptance = councils.make_acceptance(signer, NETWORK, council.group, group, two.tick())
        fields = councils.link_fields(motion, [], acceptance, first_seat(two, elected, D))
        event = sign_event(A, NETWORK, council, "link", two.tick(), fields)
        refused("invalid_delegation", lambda e=event: apply(council, e, rules=RULES))


BY_ID = {k.member_id: k for k in KEYS.values()}


def motion_id_of(event: Statement) -> bytes | None:
    """The id of the motion an election or recall event carries (links are named by it)."""
    if event.fields.get("op") not in ("elect", "recall"):
        return None
    return unpack(event.fields["motion"], "motion", NETWORK).id


def seat_change(  # type: ignore[no-untyped-def]
    cell_: Cell,
    council: RosterState,
    links: list[Statement],
    holder: IdentityKey | None,
    departures=(),
) -> Statement:
    """A seat event carrying `links`, with the proofs an honest client builds from the cell's log."""
    anchor = council.seats[cell_.state.group]
    anchor_event = next(e for e in cell_.events if motion_id_of(e) == anchor.link)
    old_roster = _roster_after(cell_, anchor_event)
    values = []
    for position, link in enumerate(links):
        roster = members_at(cell_, link)
        wanted = signers_of(link) | (
            {holder.member_id} if holder and position == len(links) - 1 else set()
        )
        old_ids = {m.member_id for m in old_roster}
        values.append(
            councils.seat_link_value(
                link,
                councils.link_proofs(roster, wanted),
                councils.link_proofs(old_roster, signers_of(link) & old_ids),
                [(d, councils.link_proofs(old_roster, ids)) for d, ids in departures]
                if position == 0
                else [],
            )
        )
        old_roster = _roster_after(cell_, link)
    fields = councils.seat_fields(
        cell_.state.group, values, None if holder is None else bundle(holder)
    )
    author = holder or BY_ID[min(council.members)]  # the new holder, else any council member
    return sign_event(author, NETWORK, council, "seat", cell_.tick(), fields)


def _roster_after(cell_: Cell, event: Statement) -> list[RosterMember]:
    state = None
    for e in [_create_of(cell_), *cell_.events]:
        state = apply(state, e, rules=RULES)
        if e.id == event.id:
            return list(state.members.values())
    raise AssertionError("not in the log")


def test_a_recall_and_a_new_election_change_the_seats_holder() -> None:
    one, two, council = two_seats()
    recalled = one.recall(B, B, C)
    elected = one.elect(B, C, C, A)
    after = apply(council, seat_change(one, council, [recalled, elected], B), rules=RULES)
    assert set(after.members) == {B.member_id, D.member_id}
    assert after.seats[one.state.group].holder == B.member_id
    assert after.needs_rekey
    # A recall alone empties the seat; its holder leaves the council.
    recalled = two.recall(E, E, F)
    vacated = apply(after, seat_change(two, after, [recalled], None), rules=RULES)
    assert set(vacated.members) == {B.member_id}
    assert vacated.seats[two.state.group].holder is None


def test_an_old_delegation_replayed_after_a_recall_is_refused() -> None:
    one, _, council = two_seats()
    first = one.events[-1]  # A's election, the seat's anchor
    recalled = one.recall(B, B, C)
    after = apply(council, seat_change(one, council, [recalled], None), rules=RULES)
    refused("stale_motion", lambda: apply(after, seat_change(one, after, [first], A), rules=RULES))


def test_informants_elsewhere_cant_make_a_cell_of_their_own_pass_for_this_one() -> None:
    """X, Y, Z (network members, not in cell one) sign an 'election' of X in cell one's name."""
    one, _, council = two_seats()
    recalled = one.recall(B, B, C)
    council = apply(council, seat_change(one, council, [recalled], None), rules=RULES)
    group = one.state.group
    made = make_group(X, NETWORK, NOW, [bundle(k) for k in (X, Y, Z)], group=group, rules=RULES)
    # A log of their own under cell one's id, following its last link.
    fake = Cell(
        replace(made.state, last_link=motion_id_of(recalled), seq=recalled.fields["seq"])  # type: ignore[arg-type]
    )
    elected = fake.elect(X, Y, Y, Z)
    refused(
        "quorum_not_reached",
        lambda: apply(council, _fake_seat(fake, council, elected, recalled), rules=RULES),
    )


def _fake_seat(
    fake: Cell, council: RosterState, elected: Statement, recalled: Statement
) -> Statement:
    roster = list(fake.state.members.values())
    wanted = signers_of(elected) | {X.member_id}
    value = councils.seat_link_value(elected, councils.link_proofs(roster, wanted), [], [])
    fields = councils.seat_fields(fake.state.group, [value], bundle(X))
    return sign_event(X, NETWORK, council, "seat", NOW + 5000, fields)


def test_a_split_between_elections_counts_as_departures_only_when_shown() -> None:
    one = tracked(A, B, C, D, E, F, name="one")
    council = found_council(one, one.elect(A, B, B, C, D, E), A)  # anchor: A..F
    motion = make_split_motion(
        D, NETWORK, one.state, [D.member_id, E.member_id, F.member_id], one.tick()
    )
    split = one.motion_event("split", motion, [D, E, F])
    recalled = one.recall(B, B, C)  # A, B, C: a majority of 3, of the anchor 3 of 6
    elected = one.elect(B, C, C, A)
    # Without the split shown, 3 of the 6 anchor members signed: short of 4.
    refused(
        "quorum_not_reached",
        lambda: apply(council, seat_change(one, council, [recalled, elected], B), rules=RULES),
    )
    moved = {D.member_id, E.member_id, F.member_id}
    shown = seat_change(one, council, [recalled, elected], B, departures=[(split, moved)])
    assert apply(council, shown, rules=RULES).seats[one.state.group].holder == B.member_id


def test_councils_do_not_split_and_cells_have_no_seats() -> None:
    one, two, council = two_seats()
    motion = make_split_motion(D, NETWORK, council, [D.member_id], NOW + 7000)
    split = sign_event(D, NETWORK, council, "split", NOW + 7001, split_event_fields(motion, []))
    refused("invalid_event", lambda: apply(council, split, rules=RULES))
    recalled = one.recall(B, B, C)
    fields = councils.seat_fields(one.state.group, [], None)
    refused(
        "invalid_event",
        lambda: apply(
            one.state, sign_event(B, NETWORK, one.state, "seat", one.tick(), fields), rules=RULES
        ),
    )
    assert recalled.fields["op"] == "recall"


def test_a_holder_who_leaves_the_council_leaves_the_seat_empty() -> None:
    _, two, council = two_seats()
    after = apply(council, remove_event(council, D, D, "left"), rules=RULES)
    assert set(after.members) == {A.member_id}
    assert after.seats[two.state.group].holder is None


# --- A cell's freeze of its spokesperson, carried to the council (crypto/exclusion.py) ----


def carried_freeze(
    cell_: Cell,
    council: RosterState,
    holder: IdentityKey,
    signers: list[IdentityKey],
    *,
    proven: list[IdentityKey] | None = None,
    kind: str = "freeze",
    current: bool = False,
    member: IdentityKey | None = None,
) -> Statement:
    """`signers` freeze `holder` in `cell_`; the event carried to `council` by the first,
    each of `proven` (default: the signers) shown on the roster of the seat's election
    (`current`: on the cell's roster now, which the council never saw), naming `member`
    (default: the holder)."""
    motion = make_freeze_motion(
        signers[0], NETWORK, cell_.state, holder.member_id, kind, cell_.tick()
    )
    signatures = [sign_motion(k, NETWORK, motion, cell_.tick()) for k in signers[1:]]
    fields = {"member": holder.member_id, **split_event_fields(motion, signatures)}
    event = cell_.post(signers[0], kind, fields)
    seat = council.seats[cell_.state.group]
    election = next(e for e in cell_.events if motion_id_of(e) == seat.link)
    roster = list(cell_.state.members.values()) if current else members_at(cell_, election)
    shown = {k.member_id for k in (proven if proven is not None else signers)}
    proofs = [entry_value(m, prove(roster, m.member_id)) for m in roster if m.member_id in shown]
    named = (member or holder).member_id
    carried = {"member": named, "link": pack(event), "proofs": proofs}
    return sign_event(signers[0], NETWORK, council, kind, cell_.tick(), carried)


def test_a_cells_freeze_of_its_seat_holder_takes_them_out_of_the_councils_readers() -> None:
    one, two, council = two_seats()
    event = carried_freeze(two, council, D, [E, F])
    frozen = apply(council, event, rules=RULES)
    assert D.member_id in frozen.frozen and D.member_id not in frozen.readers
    assert frozen.needs_rekey
    lifted = apply(frozen, carried_freeze(two, frozen, D, [E, F], kind="unfreeze"), rules=RULES)
    assert not lifted.frozen


def test_a_carried_freeze_counts_only_signers_on_the_roster_of_the_seats_election() -> None:
    for forge in (False, True):
        one, two, council = two_seats()
        # G joined cell two after D's election: their signature does not count there.
        fields = certified_add(E, NETWORK, two.state.group, bundle(G), two.tick(), (F,))
        two.post(E, "add", fields)
        if not forge:
            event = carried_freeze(two, council, D, [E, G], proven=[E])
            code = "quorum_not_reached"
        else:
            # Proofs on the cell's roster now (with G) do not climb to the election's root.
            event = carried_freeze(two, council, D, [F, G], current=True)
            code = "invalid_proof"
        with pytest.raises(RuleViolation) as caught:
            apply(council, event, rules=RULES)
        assert caught.value.code == code


def test_a_carried_freeze_of_someone_else_or_from_another_cell_is_refused() -> None:
    one, two, council = two_seats()
    # The council's seat for cell two is D's; E holds none.
    refused(
        "invalid_event",
        lambda: apply(council, carried_freeze(two, council, E, [D, F]), rules=RULES),
    )
    # Cell one's freeze of its holder, carried as if it were about cell two's.
    mixed = carried_freeze(one, council, A, [B, C], member=D)
    refused("invalid_event", lambda: apply(council, mixed, rules=RULES))


# --- A seat holder under review loses the seat (crypto/review.py) -------------------------


def seat_review(
    council: RosterState,
    seat_group: bytes,
    holder: IdentityKey,
    issuer: IdentityKey,
    *,
    certified_at: int = T0,
    key: IdentityKey | None = None,
) -> tuple[Statement, Statement]:
    """The expulsion of `issuer` and the council `remove` (reason review) of `holder`, whose
    certificate `issuer` signed at `certified_at` (over `key`'s public key, default theirs)."""
    from tests.crypto import test_exclusion as ex

    state = ex.cell(ex.A, ex.B, ex.C, issuer)
    revoked = ex.revocation(state, ex.expel_motion(state, issuer), [ex.B, ex.C])
    certificate = make_admission(
        issuer,
        NETWORK,
        (key or holder).public_key(),
        seat_group,
        fixed_bytes("review invite", 16),
        fixed_bytes("review join", 32),
        certified_at,
    )
    fields = {
        "member": holder.member_id,
        "reason": "review",
        "seat_group": seat_group,
        "revocation": pack(revoked),
        "chain": [pack(certificate.statement)],
    }
    return revoked, sign_event(E, NETWORK, council, "remove", NOW + 500, fields)


def test_a_seat_holder_whose_inviter_is_expelled_loses_the_seat() -> None:
    from tests.crypto.test_exclusion import D as X  # the inviter, expelled in their cell

    one, two, council = two_seats()
    _, event = seat_review(council, two.state.group, D, X)
    after = apply(council, event, rules=RULES)
    assert D.member_id not in after.members
    assert after.seats[two.state.group].holder is None  # empty until cell two elects again


def test_a_seat_review_on_another_line_key_or_seat_is_refused() -> None:
    from tests.crypto.test_exclusion import D as X
    from tests.crypto.test_exclusion import E as STRANGER

    one, two, council = two_seats()
    group = two.state.group
    cases = [
        ("wrong_member", seat_review(council, group, D, X, key=E)[1]),  # another key
        ("not_in_group", seat_review(council, group, E, X)[1]),  # E is on no seat
        ("invalid_event", seat_review(council, one.state.group, D, X)[1]),  # not D's seat
    ]
    revoked, event = seat_review(council, group, D, X, certified_at=T0 + 10**8)
    cases.append(("invalid_event", event))  # certified after the expulsion
    # A certificate from someone who was not expelled, carried with X's expulsion.
    other = make_admission(
        STRANGER, NETWORK, D.public_key(), group, fixed_bytes("o", 16), fixed_bytes("j", 32), T0
    )
    fields = {**event.fields, "chain": [pack(other.statement)]}
    fields = {
        k: v
        for k, v in fields.items()
        if k not in ("type", "v", "author", "key", "time", "network", "group", "seq", "prev", "op")
    }
    cases.append(("invalid_event", sign_event(E, NETWORK, council, "remove", NOW + 500, fields)))
    for code, carried in cases:
        with pytest.raises(RuleViolation) as caught:
            apply(council, carried, rules=RULES)
        assert caught.value.code == code, (code, caught.value)


def test_a_carried_freeze_is_taken_once_and_a_seat_review_notes_its_expulsion() -> None:
    from tests.crypto.test_exclusion import D as X

    one, two, council = two_seats()
    first = carried_freeze(two, council, D, [E, F])
    frozen = apply(council, first, rules=RULES)
    lifted = apply(frozen, carried_freeze(two, frozen, D, [E, F], kind="unfreeze"), rules=RULES)
    # The old freeze, lifted since, carried again: refused.
    fields = {k: first.fields[k] for k in ("member", "link", "proofs")}
    replayed = sign_event(E, NETWORK, lifted, "freeze", NOW + 900, fields)
    refused("stale_motion", lambda: apply(lifted, replayed, rules=RULES))
    # A seat review notes the expulsion it rests on, so it can't unseat anyone twice.
    revoked, review = seat_review(lifted, two.state.group, D, X)
    after = apply(lifted, review, rules=RULES)
    assert revoked.id in after.reviewed
