"""Hostile input to crypto/ (issue 12): properties that hold for every damaged object.

The rule these tests keep: whatever a server, a cellmate or a thief hands a
receiver, one flipped bit or one cut anywhere in a signed or sealed object
makes the receiver's verifier refuse it, with the error that verifier
documents (a CryptoError subclass, never a crash), and no bit is in a field
the verifier ignores. Three layers:

- Canonical encoding: every value round trips; truncations, trailing bytes,
  flips, keys out of order or repeated, bad UTF-8 and deep nesting never
  decode to a second spelling of a value.
- Each object as it travels (a statement's body and signature, a box, a
  message's header, ciphertext and signature, a keystore file), checked by
  the verifier its receiver runs.
- Evidence an event carries (nested statements, roster proofs, seat
  evidence): damaged inside an event whose poster signs it again, so the
  outer signature holds and only the rule book's own checks stand between
  the damage and the log.

Objects come from tests/vectors/*.json where those hold them, otherwise from
the builders of the other crypto tests. Hypothesis picks the bit or the cut
(derandomized: the same examples every run); the small parts (signatures,
boxes, messages, profiles, keystores, codes) are also checked at every bit.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crypto import councils
from crypto.chains import make_revocation, parse_admission, parse_revocation, parse_verdict
from crypto.delegations import parse_link
from crypto.encoding import MAX_DEPTH, Value, b32d, b32e, decode, encode
from crypto.epochs import MessageKey, derive_epoch_keys, open_secret
from crypto.errors import (
    CryptoError,
    DecryptionFailed,
    InvalidCode,
    InvalidSignature,
    InvalidStatement,
    KeystoreError,
    RuleViolation,
)
from crypto.exclusion import (
    check_grounds,
    expel_terms,
    freeze_subject,
    open_reason,
    open_self_revocation,
)
from crypto.invites import InviteCode, make_invite, parse_invite, parse_join, verify_proof
from crypto.keys import IdentityKey, IdentityPublicKey
from crypto.keystore import KdfParams, derive_key, open_keystore, open_with_key
from crypto.messages import (
    SealedMessage,
    open_message,
    open_profile,
    verify_message,
    verify_profile,
)
from crypto.motions import election_terms, parse_motion
from crypto.network import DAY, parse_key_bundle, verify_genesis
from crypto.roster import RosterState, apply, sign_event
from crypto.statements import (
    Statement,
    get_bytes,
    pack,
    sign_statement,
    signing_context,
    unpack,
    verify_statement,
)
from tests.crypto import test_councils as cc
from tests.crypto import test_exclusion as ex
from tests.crypto import test_exclusion_vectors as xv
from tests.crypto import test_group_vectors as gv
from tests.crypto import test_invites as iv
from tests.crypto.helpers import T0, fixed_bytes, flip
from tests.crypto.test_encoding import depth as value_depth
from tests.crypto.test_encoding import dict_bytes, same, scalars, str_bytes, values
from tests.crypto.test_roster import NETWORK, bundle

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
STATEMENT_VECTORS = json.loads((VECTORS / "statements.json").read_text("utf-8"))
KEYSTORE_VECTORS = json.loads((VECTORS / "keystore.json").read_text("utf-8"))

# What each verifier documents it raises (crypto/errors.py and its docstring).
STATEMENT = (InvalidStatement, InvalidSignature)  # verify_statement, verify_message, verify_profile
SEALED = (DecryptionFailed,)  # open_secret, open_payload, open_message, open_profile, boxes
CODE = (InvalidCode,)  # InviteCode.parse
PROOF = (InvalidSignature,)  # invites.verify_proof
KEYSTORE = (KeystoreError,)  # open_keystore, open_with_key
EVENT = (RuleViolation,)  # roster.apply: every CryptoError of an event becomes one
# check_grounds raises RuleViolation for grounds it reads, and lets the carried
# statements' own errors through (unpack: InvalidStatement, InvalidSignature).
GROUNDS = (RuleViolation, InvalidStatement, InvalidSignature)

# Bounded so that the whole file runs in well under 20 s on the 2-core CI machine.
FLIPS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CUTS = settings(FLIPS, max_examples=20)
ENCODING = settings(FLIPS, max_examples=200)


# --- 1. Canonical encoding ---------------------------------------------------------------


def encodable(value: Value) -> bool:
    return value_depth(value) <= MAX_DEPTH


@ENCODING
@given(values)
def test_any_value_round_trips_to_the_same_bytes(value: Value) -> None:
    assume(encodable(value))
    data = encode(value)
    back = decode(data)
    assert same(back, value)
    assert encode(back) == data


@ENCODING
@given(values, st.data())
def test_no_truncation_of_an_encoding_decodes(value: Value, data: st.DataObject) -> None:
    assume(encodable(value))
    encoded = encode(value)
    cut = data.draw(st.integers(0, len(encoded) - 1), label="cut")
    with pytest.raises(InvalidStatement):
        decode(encoded[:cut])


@ENCODING
@given(values, st.binary(min_size=1, max_size=16))
def test_trailing_bytes_after_any_encoding_are_refused(value: Value, tail: bytes) -> None:
    assume(encodable(value))
    with pytest.raises(InvalidStatement):
        decode(encode(value) + tail)


@ENCODING
@given(values, st.data())
def test_a_flipped_bit_decodes_to_another_value_or_not_at_all(
    value: Value, data: st.DataObject
) -> None:
    """A flip either breaks the encoding or spells another value canonically: never a
    second spelling of the same value (that would be a second body for one signature)."""
    assume(encodable(value))
    encoded = encode(value)
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1), label="bit")
    damaged = flip(encoded, bit // 8, 1 << (bit % 8))
    try:
        other = decode(damaged)
    except InvalidStatement:
        return
    assert encode(other) == damaged
    assert not same(other, value)


keys = st.text(max_size=6)


@ENCODING
@given(st.dictionaries(keys, scalars, min_size=2, max_size=5), st.data())
def test_dict_keys_out_of_order_are_refused(record: dict[str, Value], data: st.DataObject) -> None:
    ordered = sorted(record, key=lambda k: k.encode("utf-8"))
    order = data.draw(st.permutations(ordered), label="order")
    assume(order != ordered)
    spelled = dict_bytes(*((k.encode("utf-8"), encode(record[k])) for k in order))
    with pytest.raises(InvalidStatement):
        decode(spelled)


@ENCODING
@given(st.dictionaries(keys, scalars, min_size=1, max_size=5), st.data())
def test_a_repeated_dict_key_is_refused(record: dict[str, Value], data: st.DataObject) -> None:
    items = [
        (k.encode("utf-8"), encode(record[k])) for k in sorted(record, key=lambda k: k.encode())
    ]
    again = data.draw(st.integers(0, len(items) - 1), label="repeated")
    items.insert(again + 1, items[again])
    with pytest.raises(InvalidStatement):
        decode(dict_bytes(*items))


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@ENCODING
@given(st.binary(min_size=1, max_size=24).filter(_not_utf8))
def test_strings_and_keys_that_are_not_utf8_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidStatement):
        decode(str_bytes(raw))
    with pytest.raises(InvalidStatement):
        decode(dict_bytes((raw, encode(None))))


@ENCODING
@given(st.lists(st.sampled_from(["list", "dict"]), max_size=2 * MAX_DEPTH))
def test_nesting_is_refused_exactly_beyond_the_limit(shape: list[str]) -> None:
    """`shape` wraps None in lists and one-key dicts, outermost first."""
    value: Value = None
    spelled = encode(None)
    for kind in reversed(shape):
        if kind == "list":
            value, spelled = [value], b"\x06" + struct.pack(">I", 1) + spelled
        else:
            value, spelled = {"k": value}, dict_bytes((b"k", spelled))
    if len(shape) <= MAX_DEPTH:
        assert encode(value) == spelled and same(decode(spelled), value)
        return
    with pytest.raises(ValueError):
        encode(value)
    with pytest.raises(InvalidStatement):
        decode(spelled)


# --- 2. Objects as they travel, and the verifier that receives them ------------------------


@dataclass(frozen=True)
class Target:
    """A signed or sealed object, in the parts it travels as, and its receiver's check.

    `check(*parts)` runs what a receiver runs and returns only if it accepts.
    `every_bit`: the parts small enough to be checked at every bit and cut.
    `skip(parts)`: damage this check must not be given (see the keystore's).
    """

    parts: tuple[bytes, ...]
    check: Callable[..., object]
    errors: tuple[type[CryptoError], ...]
    every_bit: tuple[int, ...] = ()
    skip: Callable[[tuple[bytes, ...]], bool] = field(default=lambda parts: False)

    def outcome(self, parts: tuple[bytes, ...]) -> str | None:
        """None if the check refused `parts` as documented; what happened otherwise."""
        try:
            self.check(*parts)
        except self.errors:
            return None
        except CryptoError as exc:
            return f"refused with {type(exc).__name__} ({exc}), not {_names(self.errors)}"
        except Exception as exc:  # a crash on hostile input is a finding too
            return f"crashed with {type(exc).__name__}: {exc}"
        return "ACCEPTED"


def _names(errors: Sequence[type[Exception]]) -> str:
    return "/".join(e.__name__ for e in errors)


def flipped(parts: tuple[bytes, ...], part: int, bit: int) -> tuple[bytes, ...]:
    damaged = flip(parts[part], bit // 8, 1 << (bit % 8))
    return (*parts[:part], damaged, *parts[part + 1 :])


def cut(parts: tuple[bytes, ...], part: int, length: int) -> tuple[bytes, ...]:
    return (*parts[:part], parts[part][:length], *parts[part + 1 :])


def statement_target(
    body: bytes,
    signature: bytes,
    kind: str,
    network: bytes | None,
    then: Callable[[Statement], object] = lambda statement: None,
) -> Target:
    """A statement as it travels (`{"body", "sig"}`), verified and then parsed by `then`.

    A statement's signature is checked at every bit: one Ed25519 check serves
    every type, and a malleable signature would show there."""

    def check(body: bytes, signature: bytes) -> None:
        then(verify_statement(body, signature, kind, network))

    return Target((body, signature), check, STATEMENT, every_bit=(1,))


def of(statement: Statement, then: Callable[[Statement], object] = lambda s: None) -> Target:
    return statement_target(
        statement.body, statement.signature, statement.type, statement.network, then
    )


def evidence_target(
    event: Statement,
    poster: IdentityKey,
    names: Sequence[str],
    then: Callable[[Statement], object],
    errors: tuple[type[CryptoError], ...] = EVENT,
) -> Target:
    """The encoded values of `names` in `event`'s body, damaged and signed again by `poster`.

    The outer signature then holds, so a flip there is judged by the rule
    book alone: the nested statements' signatures, the roster proofs, the
    links between them."""
    assert poster.member_id == event.author
    body = event.body
    spans = sorted(_span(body, name, event.fields[name]) for name in names)

    def check(*damaged: bytes) -> None:
        out, at = b"", 0
        for (start, end), part in zip(spans, damaged, strict=True):
            out, at = out + body[at:start] + part, end
        out += body[at:]
        signature = poster.sign(signing_context(event.type), out)
        then(verify_statement(out, signature, event.type, event.network))

    parts = tuple(body[start:end] for start, end in spans)
    # InvalidStatement also when the damaged body no longer decodes at all.
    return Target(parts, check, (InvalidStatement, *errors))


def _span(body: bytes, name: str, value: Value) -> tuple[int, int]:
    """Where the encoding of the top-level field `name` lies in `body`."""
    key, raw = encode(name), encode(value)
    at = body.find(key + raw)
    assert at >= 0 and body.find(key + raw, at + 1) < 0, name
    return at + len(key), at + len(key) + len(raw)


def hexed(record: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(record[name])


# Statements of the part 1 vectors (tests/vectors/statements.json).


def _genesis() -> Target:
    g = STATEMENT_VECTORS["genesis"]
    network = hexed(g, "network_id")
    body, signature = hexed(g, "body"), hexed(g, "signature")
    return Target(
        (body, signature),
        lambda body, signature: verify_genesis(body, signature, network),
        STATEMENT,
        every_bit=(1,),
    )


def _admission() -> Target:
    a = STATEMENT_VECTORS["admission"]
    return statement_target(
        hexed(a, "body"),
        hexed(a, "signature"),
        "admission",
        hexed(a, "network_id"),
        parse_admission,
    )


def _invite_vector(name: str) -> bytes:
    return hexed(STATEMENT_VECTORS["invite"], name)


def _key_bundle() -> Target:
    network = _invite_vector("network_id")
    return statement_target(
        _invite_vector("bundle_body"),
        _invite_vector("bundle_signature"),
        "key-bundle",
        network,
        parse_key_bundle,
    )


def _join_statement() -> Statement:
    network = _invite_vector("network_id")
    return verify_statement(
        _invite_vector("join_body"), _invite_vector("join_signature"), "join", network
    )


def _join() -> Target:
    return of(_join_statement(), parse_join)


def _invite_code() -> InviteCode:
    return InviteCode(_invite_vector("secret"))


def _invite() -> Target:
    made = make_invite(iv.INVITER, iv.NETWORK, iv.CODE, iv.CELL, T0, T0 + DAY)
    return of(made.statement, parse_invite)


def _invite_proof() -> Target:
    code, join = _invite_code(), _join_statement()
    return Target(
        (_invite_vector("proof"),),
        lambda proof: verify_proof(code.proof_public_key, join, proof),
        PROOF,
        every_bit=(0,),
    )


def _invite_payload() -> Target:
    code = _invite_code()
    return Target((_invite_vector("sealed"),), code.open_payload, SEALED, every_bit=(0,))


def _code_text(raw: bytes) -> str:
    letters = b32e(raw)
    return "-".join(letters[i : i + 4] for i in range(0, len(letters), 4))


def _invite_code_text() -> Target:
    """The code's 20 bytes (secret and checksum) as a person reads them out."""
    code = _invite_code()
    raw = b32d(code.text.replace("-", ""))
    assert raw[: len(code.secret)] == code.secret and _code_text(raw) == code.text
    return Target((raw,), lambda raw: InviteCode.parse(_code_text(raw)), CODE, every_bit=(0,))


# Roster logs, epochs, messages and profiles (tests/vectors/groups.json).


@functools.cache
def _group_log() -> tuple[list[Statement], list[RosterState | None]]:
    """The stored events and the state each one was applied to."""
    events = gv.stored_events()
    states: list[RosterState | None] = [None]
    for event in events[:-1]:
        states.append(apply(states[-1], event, rules=gv.rules()))
    return events, states


def _roster_event(position: int) -> Target:
    events, states = _group_log()
    before = states[position]
    return of(events[position], lambda event: apply(before, event, rules=gv.rules()))


def _roster_evidence(position: int, names: Sequence[str]) -> Target:
    events, states = _group_log()
    before, event = states[position], events[position]
    poster = gv.identity(gv.EVENTS[position]["author"])
    return evidence_target(event, poster, names, lambda e: apply(before, e, rules=gv.rules()))


def _vouch() -> Target:
    _, add, _ = _group_log()[0]
    vouches = add.fields["vouches"]
    assert isinstance(vouches, list)
    return of(unpack(vouches[0], "vouch", gv.NETWORK), parse_verdict)


def _epoch_box(position: int) -> Target:
    box = gv.EPOCH["boxes"][position]
    state = _group_state()
    name = box["recipient"]
    recipient = gv.identity(name).member_id
    private = gv.kem_key(name)

    def check(sealed: bytes) -> bytes:
        return open_secret(
            private,
            sealed,
            gv.GROUP,
            gv.EPOCH["number"],
            state.roster_hash,
            recipient,
            bytes.fromhex(gv.EPOCH["commitment"]),
        )

    return Target((hexed(box, "box"),), check, SEALED, every_bit=(0,))


def _group_state() -> RosterState:
    """The state after the whole stored log: the roster the epoch boxes were sealed to."""
    events, states = _group_log()
    return apply(states[-1], events[-1], rules=gv.rules())


def _stored_message() -> tuple[tuple[bytes, bytes, bytes], IdentityPublicKey, MessageKey]:
    vector = gv.VECTORS["message"]
    sender = gv.identity(vector["sender"])
    chain = derive_epoch_keys(gv.SECRET, gv.GROUP, gv.EPOCH["number"], [sender.member_id])
    message_key = chain.chains[sender.member_id].key_for(vector["counter"])
    parts = (hexed(vector, "header"), hexed(vector, "ciphertext"), hexed(vector, "signature"))
    return parts, sender.public_key(), message_key


def _message_as_the_server_checks_it() -> Target:
    parts, sender, _ = _stored_message()
    return Target(
        parts,
        lambda h, c, s: verify_message(SealedMessage(h, c, s), sender),
        STATEMENT,
        every_bit=(0, 1, 2),
    )


def _message_as_a_member_opens_it() -> Target:
    """open_message alone (a reader also verifies first): the AEAD covers header and text."""
    (header, ciphertext, signature), _, message_key = _stored_message()
    return Target(
        (header, ciphertext),
        lambda h, c: open_message(SealedMessage(h, c, signature), message_key),
        SEALED,
        every_bit=(0, 1),
    )


def _stored_profile() -> tuple[bytes, IdentityPublicKey, bytes]:
    vector = gv.VECTORS["profile"]
    member = gv.identity(vector["member"]).public_key()
    return hexed(vector, "sealed"), member, bytes.fromhex(gv.VECTORS["chain"]["profile_key"])


def _profile_as_the_server_checks_it() -> Target:
    sealed, member, _ = _stored_profile()
    return Target(
        (sealed,),
        lambda s: verify_profile(gv.GROUP, gv.EPOCH["number"], member, s),
        STATEMENT,
        every_bit=(0,),
    )


def _profile_as_a_member_opens_it() -> Target:
    sealed, member, key = _stored_profile()
    return Target(
        (sealed,),
        lambda s: open_profile(key, gv.GROUP, gv.EPOCH["number"], member, s),
        SEALED,
        every_bit=(0,),
    )


# Exclusion (tests/vectors/exclusion.json): expulsion, self-revocation, freeze.


def _excluded(name: str, kind: str, then: Callable[[Statement], object]) -> Target:
    return of(xv.stored(name, kind), then)


def _grounds_of(subject: str) -> Callable[[Statement], object]:
    def then(statement: Statement) -> object:
        revocation = parse_revocation(statement)
        return check_grounds(statement, xv.KEYS[subject].member_id, xv.RULES), revocation

    return then


def _steward_revocation() -> Target:
    made = make_revocation(xv.KEYS["A"], xv.NETWORK, xv.KEYS["C"].member_id, xv.V["t0"])
    return of(made.statement, _grounds_of("C"))


def _self_box() -> Target:
    d, b = xv.KEYS["D"].member_id, xv.KEYS["B"].member_id
    return Target(
        (bytes.fromhex(xv.V["self_box"]),),
        lambda box: open_self_revocation(box, xv.NETWORK, d, b, xv.KEMS["B"]),
        SEALED,
        every_bit=(0,),
    )


def _reason_box() -> Target:
    """B's box of the expulsion's reason, in a motion its opener signs again around it.

    open_reason documents None for a reason not sealed to the caller, and
    gives None for a box that does not open: here None is the refusal."""
    motion = xv.stored("expel_motion", "motion")
    me = xv.KEYS["B"].member_id
    terms = dict(parse_motion(motion).terms)
    reason = terms["reason"]
    assert isinstance(reason, list)
    (position,) = [i for i, item in enumerate(reason) if isinstance(item, list) and item[0] == me]
    box = reason[position]
    assert isinstance(box, list) and isinstance(box[1], bytes)
    fields = {
        k: v
        for k, v in motion.fields.items()
        if k not in ("type", "v", "author", "key", "time", "network")
    }

    def check(damaged: bytes) -> str:
        boxes: list[Value] = [*reason[:position], [me, damaged], *reason[position + 1 :]]
        signed = sign_statement(
            xv.KEYS["A"],
            "motion",
            xv.NETWORK,
            motion.time,
            {**fields, "terms": {**terms, "reason": boxes}},
        )
        text = open_reason(parse_motion(signed), me, xv.KEMS["B"])
        if text is None:
            raise DecryptionFailed("no reason opens for me")
        return text

    return Target((box[1],), check, SEALED, every_bit=(0,))


def _expulsion_evidence() -> Target:
    revocation = xv.stored("expulsion", "revocation")
    return evidence_target(
        revocation, xv.KEYS["A"], ("motion", "signatures", "proofs"), _grounds_of("D"), GROUNDS
    )


def _self_published_evidence() -> Target:
    revocation = xv.stored("self_published", "revocation")
    return evidence_target(revocation, xv.KEYS["B"], ("self",), _grounds_of("D"), GROUNDS)


# A cell's freeze and expulsion as roster events (tests/crypto/test_exclusion.py builders).


@dataclass(frozen=True)
class CellScene:
    state: RosterState
    freeze: Statement
    expel: Statement


@functools.cache
def _cell_scene() -> CellScene:
    state = ex.cell(ex.A, ex.B, ex.C, ex.D, ex.E)
    freeze = ex.freeze_event(state, "freeze", ex.E, [ex.A, ex.B])
    revoked = ex.revocation(state, ex.expel_motion(state, ex.E), [ex.B, ex.C])
    return CellScene(state, freeze, ex.expel_event(state, revoked))


def _in_cell() -> Callable[[Statement], object]:
    before = _cell_scene().state
    return lambda e: apply(before, e, rules=ex.RULES)


def _cell_freeze() -> Target:
    return of(_cell_scene().freeze, _in_cell())


def _cell_freeze_evidence() -> Target:
    event = _cell_scene().freeze
    return evidence_target(event, ex.A, ("motion", "signatures"), _in_cell())


def _cell_expel() -> Target:
    return of(_cell_scene().expel, _in_cell())


def _cell_expel_evidence() -> Target:
    event = _cell_scene().expel
    return evidence_target(event, ex.A, ("revocation",), _in_cell())


# Councils and delegations (tests/crypto/test_councils.py builders).


@dataclass(frozen=True)
class CouncilScene:
    cell_before_election: RosterState
    election: Statement  # cell one's election of A: the council's first link
    create: Statement  # the council founded on it
    linked_before: RosterState  # the council before cell two is linked
    link: Statement
    council: RosterState  # with both seats
    seat: Statement  # cell one recalls A and elects B: the seat changes hands
    freeze: Statement  # cell two freezes D, carried to the council
    review: Statement  # D's inviter is expelled: D loses the seat


@functools.cache
def _council_scene() -> CouncilScene:
    a, b, c, d, e, f = cc.A, cc.B, cc.C, cc.D, cc.E, cc.F
    one = cc.tracked(a, b, c, name="properties one")
    two = cc.tracked(d, e, f, name="properties two")
    before = one.state
    election = one.elect(a, b, b, c)
    create, founded = councils.make_council(
        a,
        NETWORK,
        one.tick(),
        1,
        bundle(a),
        one.state.group,
        cc.first_seat(one, election, a),
        rules=cc.RULES,
        group=fixed_bytes("properties council", 16),
    )
    elected = two.elect(d, e, e, f)
    motion = councils.make_link_motion(a, NETWORK, founded, two.state.group, two.tick())
    acceptance = councils.make_acceptance(d, NETWORK, founded.group, two.state.group, two.tick())
    fields = councils.link_fields(motion, [], acceptance, cc.first_seat(two, elected, d))
    link = sign_event(a, NETWORK, founded, "link", two.tick(), fields)
    council = apply(founded, link, rules=cc.RULES)
    recalled = one.recall(b, b, c)
    reelected = one.elect(b, c, c, a)
    seat = cc.seat_change(one, council, [recalled, reelected], b)
    freeze = cc.carried_freeze(two, council, d, [e, f])
    _, review = cc.seat_review(council, two.state.group, d, ex.D)
    return CouncilScene(before, election, create, founded, link, council, seat, freeze, review)


def _on_council(
    state: Callable[[CouncilScene], RosterState | None],
) -> Callable[[Statement], object]:
    before = state(_council_scene())
    return lambda event: apply(before, event, rules=cc.RULES)


def _delegation() -> Target:
    """An election as a council reads it (delegations.parse_link), before any proof."""
    scene = _council_scene()
    group = scene.cell_before_election.group
    return of(scene.election, lambda e: parse_link(pack(e), group, NETWORK, cc.RULES))


def _elect_motion() -> Target:
    motion = unpack(_council_scene().election.fields["motion"], "motion", NETWORK)
    return of(motion, lambda s: election_terms(parse_motion(s)))


def _cell_election() -> Target:
    scene = _council_scene()
    return of(scene.election, _on_council(lambda s: s.cell_before_election))


def _cell_election_evidence() -> Target:
    scene = _council_scene()
    return evidence_target(
        scene.election,
        cc.B,
        ("motion", "signatures"),
        _on_council(lambda s: s.cell_before_election),
    )


COUNCIL_EVENTS: dict[
    str,
    tuple[
        Callable[[CouncilScene], Statement],
        Callable[[CouncilScene], RosterState | None],
        IdentityKey,
        tuple[str, ...],
    ],
] = {
    "create": (lambda s: s.create, lambda s: None, cc.A, ("members", "seat")),
    "link": (
        lambda s: s.link,
        lambda s: s.linked_before,
        cc.A,
        ("motion", "signatures", "accept", "seat"),
    ),
    "seat": (lambda s: s.seat, lambda s: s.council, cc.B, ("links", "bundle")),
    "carried freeze": (lambda s: s.freeze, lambda s: s.council, cc.E, ("link", "proofs")),
    "seat review": (lambda s: s.review, lambda s: s.council, cc.E, ("revocation", "chain")),
}


def _council_event(name: str) -> Target:
    event, before, _, _ = COUNCIL_EVENTS[name]
    return of(event(_council_scene()), _on_council(before))


def _council_evidence(name: str) -> Target:
    event, before, poster, names = COUNCIL_EVENTS[name]
    return evidence_target(event(_council_scene()), poster, names, _on_council(before))


# Keystore files (tests/vectors/keystore.json, its smallest-cost vector).

KEYSTORE_VECTOR = KEYSTORE_VECTORS["vectors"][0]
MEMORY_KIB = slice(9, 13)  # the header's Argon2id memory field (crypto/keystore.py)
# A flipped memory field can ask for up to 4 GiB (the bound open_keystore
# accepts): derivations past this cost are left to the kept-key check.
AFFORDABLE_KIB = 64 * 1024


def _costly(parts: tuple[bytes, ...]) -> bool:
    (memory,) = struct.unpack(">I", parts[0][MEMORY_KIB]) if len(parts[0]) >= 13 else (0,)
    return bool(memory > AFFORDABLE_KIB)


def _keystore_with_passphrase() -> Target:
    blob, passphrase = hexed(KEYSTORE_VECTOR, "blob"), KEYSTORE_VECTOR["passphrase"]
    assert KdfParams(**KEYSTORE_VECTOR["params"]) == KdfParams(1, 8, 1)
    return Target(
        (blob,),
        lambda blob: open_keystore(passphrase, blob),
        KEYSTORE,
        every_bit=(0,),
        skip=_costly,
    )


def _keystore_with_kept_key() -> Target:
    blob = hexed(KEYSTORE_VECTOR, "blob")
    key = derive_key(KEYSTORE_VECTOR["passphrase"], blob)
    return Target((blob,), lambda blob: open_with_key(key, blob), KEYSTORE, every_bit=(0,))


TARGETS: dict[str, Callable[[], Target]] = {
    # statements
    "genesis": _genesis,
    "key-bundle": _key_bundle,
    "invite": _invite,
    "join": _join,
    "admission": _admission,
    "vouch": _vouch,
    "revocation (steward)": _steward_revocation,
    "revocation (expelled)": lambda: _excluded("expulsion", "revocation", _grounds_of("D")),
    "revocation (self)": lambda: _excluded("self_published", "revocation", _grounds_of("D")),
    "self-revocation": lambda: _excluded(
        "self_revocation", "self-revocation", lambda s: get_bytes(s.fields, "holder", 32)
    ),
    "motion (expel)": lambda: _excluded(
        "expel_motion", "motion", lambda s: expel_terms(parse_motion(s))
    ),
    "motion (freeze)": lambda: _excluded(
        "freeze_motion", "motion", lambda s: freeze_subject(parse_motion(s))
    ),
    "motion (elect)": _elect_motion,
    "motion-sign": lambda: _excluded(
        "expel_signature", "motion-sign", lambda s: get_bytes(s.fields, "motion", 32)
    ),
    "roster create": lambda: _roster_event(0),
    "roster add": lambda: _roster_event(1),
    "roster epoch": lambda: _roster_event(2),
    "roster elect": _cell_election,
    "roster freeze": _cell_freeze,
    "roster remove (expelled)": _cell_expel,
    "delegation (parse_link)": _delegation,
    **{f"council {name}": functools.partial(_council_event, name) for name in COUNCIL_EVENTS},
    # sealed, padded or proven
    "invite code": _invite_code_text,
    "invite payload": _invite_payload,
    "invite proof": _invite_proof,
    "epoch box (ML-KEM-768 + X25519)": lambda: _epoch_box(0),
    "epoch box (X25519)": lambda: _epoch_box(1),
    "message (server)": _message_as_the_server_checks_it,
    "message (member)": _message_as_a_member_opens_it,
    "profile (server)": _profile_as_the_server_checks_it,
    "profile (member)": _profile_as_a_member_opens_it,
    "self-revocation box": _self_box,
    "expulsion reason box": _reason_box,
    "keystore (passphrase)": _keystore_with_passphrase,
    "keystore (kept key)": _keystore_with_kept_key,
    # evidence carried inside an event its poster signs again
    "evidence: roster create": lambda: _roster_evidence(0, ("members",)),
    "evidence: roster add": lambda: _roster_evidence(1, ("bundle", "certificate", "vouches")),
    "evidence: roster elect": _cell_election_evidence,
    "evidence: roster freeze": _cell_freeze_evidence,
    "evidence: roster remove (expelled)": _cell_expel_evidence,
    "evidence: revocation (expelled)": _expulsion_evidence,
    "evidence: revocation (self)": _self_published_evidence,
    **{
        f"evidence: council {name}": functools.partial(_council_evidence, name)
        for name in COUNCIL_EVENTS
    },
}
NAMES = list(TARGETS)
# Evidence is only flipped: a cut inside a body it is spliced into is a broken
# encoding, refused before any rule is asked.
OBJECTS = [name for name in NAMES if not name.startswith("evidence: ")]


@functools.cache
def target(name: str) -> Target:
    return TARGETS[name]()


@pytest.mark.parametrize("name", NAMES)
def test_the_undamaged_object_is_accepted(name: str) -> None:
    """Without this, every refusal below could be a refusal of everything."""
    made = target(name)
    made.check(*made.parts)


@pytest.mark.parametrize("name", NAMES)
@FLIPS
@given(data=st.data())
def test_any_flipped_bit_is_refused_with_the_documented_error(
    name: str, data: st.DataObject
) -> None:
    made = target(name)
    part = data.draw(st.integers(0, len(made.parts) - 1), label="part")
    bit = data.draw(st.integers(0, len(made.parts[part]) * 8 - 1), label="bit")
    damaged = flipped(made.parts, part, bit)
    assume(not made.skip(damaged))
    assert made.outcome(damaged) is None, (
        f"{name}: bit {bit} of part {part}: {made.outcome(damaged)}"
    )


@pytest.mark.parametrize("name", OBJECTS)
@CUTS
@given(data=st.data())
def test_any_truncation_is_refused_with_the_documented_error(
    name: str, data: st.DataObject
) -> None:
    made = target(name)
    part = data.draw(st.integers(0, len(made.parts) - 1), label="part")
    length = data.draw(st.integers(0, len(made.parts[part]) - 1), label="length")
    damaged = cut(made.parts, part, length)
    assert made.outcome(damaged) is None, (
        f"{name}: part {part} cut to {length}: {made.outcome(damaged)}"
    )


@pytest.mark.parametrize("name", OBJECTS)
def test_every_bit_and_every_cut_of_the_small_parts_is_refused(name: str) -> None:
    made = target(name)
    found: list[str] = []
    for part in made.every_bit:
        for bit in range(len(made.parts[part]) * 8):
            damaged = flipped(made.parts, part, bit)
            if made.skip(damaged):
                continue
            if (outcome := made.outcome(damaged)) is not None:
                found.append(f"bit {bit} of part {part}: {outcome}")
        for length in range(len(made.parts[part])):
            if (outcome := made.outcome(cut(made.parts, part, length))) is not None:
                found.append(f"part {part} cut to {length}: {outcome}")
    assert not found, f"{name}: {len(found)} damaged forms not refused: {found[:10]}"


def test_a_keystore_that_asks_for_more_memory_is_refused_before_any_derivation() -> None:
    """The flips the passphrase check skips (a memory field past AFFORDABLE_KIB): a kept
    key refuses them unopened, and a header past the documented bound (4 GiB) is refused
    before Argon2 runs."""
    blob = hexed(KEYSTORE_VECTOR, "blob")
    key = derive_key(KEYSTORE_VECTOR["passphrase"], blob)
    costly = [
        flipped((blob,), 0, bit)[0]
        for bit in range(MEMORY_KIB.start * 8, MEMORY_KIB.stop * 8)
        if _costly(flipped((blob,), 0, bit))
    ]
    assert costly
    for damaged in costly:
        with pytest.raises(KeystoreError):
            open_with_key(key, damaged)
    beyond = blob[:9] + struct.pack(">I", 4 * 1024 * 1024 + 1) + blob[13:]
    with pytest.raises(KeystoreError):
        derive_key(KEYSTORE_VECTOR["passphrase"], beyond)
