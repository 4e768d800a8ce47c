"""Tests of crypto.labels: every label distinct, signature contexts never shared."""

from __future__ import annotations

import pytest

from crypto import labels
from crypto.statements import signing_context

# Every statement type protocol v1 signs (docs/PROTOCOL.md §4, §11, §13).
STATEMENT_TYPES = (
    "genesis",
    "roster",
    "key-bundle",
    "invite",
    "join",
    "admission",
    "vouch",
    "block",
    "revocation",
    "motion",
    "motion-sign",
)


def _byte_labels() -> dict[str, bytes]:
    """Every bytes constant of crypto.labels but the bare prefixes and the chain-step bytes."""
    skip = {"PREFIX", "STATEMENT_SIGNATURE", "CHAIN_MESSAGE_KEY", "CHAIN_NEXT_KEY", "CHAIN_NONCE"}
    return {
        name: value
        for name, value in vars(labels).items()
        if name.isupper() and isinstance(value, bytes) and name not in skip
    }


def _tail_types() -> set[str]:
    """Each label's text after `spokes/v1/`, as a would-be statement type ("login", "message", ...)."""
    tails = set()
    for value in _byte_labels().values():
        tail = value.removeprefix(labels.PREFIX).rstrip(b"\x00").decode()
        tails.update({tail, tail.split("/")[0], tail.split("/")[-1]})
    return {t for t in tails if t and all(c.islower() or c == "-" for c in t)}


def test_every_label_is_distinct() -> None:
    values = list(_byte_labels().values())
    assert len(set(values)) == len(values)
    chain_steps = [labels.CHAIN_MESSAGE_KEY, labels.CHAIN_NEXT_KEY, labels.CHAIN_NONCE]
    assert len(set(chain_steps)) == len(chain_steps)


def test_every_label_is_under_the_version_prefix() -> None:
    for name, value in _byte_labels().items():
        assert value.startswith(labels.PREFIX), name
    assert labels.STATEMENT_SIGNATURE.startswith(labels.PREFIX)


def test_statement_contexts_and_other_signature_contexts_are_disjoint() -> None:
    statement_contexts = {signing_context(t) for t in {*STATEMENT_TYPES, *_tail_types()}}
    others = set(labels.OTHER_SIGNATURE_CONTEXTS)
    assert statement_contexts.isdisjoint(others)
    # The named collisions of the review: a statement typed like another signature.
    assert signing_context("login") != labels.LOGIN
    assert signing_context("message") != labels.MESSAGE_SIGNATURE
    assert signing_context("profile-signature") != labels.PROFILE_SIGNATURE


def test_no_other_label_is_in_the_statement_namespace() -> None:
    # Holds for every type there could ever be, not only the known ones.
    for name, value in _byte_labels().items():
        assert not value.startswith(labels.STATEMENT_SIGNATURE), name


def test_no_signature_context_is_a_prefix_of_another() -> None:
    contexts = [*labels.OTHER_SIGNATURE_CONTEXTS, *(signing_context(t) for t in STATEMENT_TYPES)]
    assert len(set(contexts)) == len(contexts)
    for context in contexts:
        assert context.endswith(b"\x00") and context.count(b"\x00") == 1, context
    for a in contexts:
        for b in contexts:
            assert a == b or not b.startswith(a), (a, b)


def test_other_signature_contexts_list_every_signature_label() -> None:
    named = {
        value
        for name, value in _byte_labels().items()
        if name == "LOGIN" or name.endswith(("_SIGNATURE", "_PROOF"))
    }
    assert named == set(labels.OTHER_SIGNATURE_CONTEXTS)


@pytest.mark.parametrize(
    "bad", ["", "Login", "vouch\n", "invite/proof", "a\x00b", "login/", "-x", "x" * 33, "é"]
)
def test_a_type_that_could_leave_its_namespace_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        signing_context(bad)
