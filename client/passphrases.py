"""A new keystore's passphrase: refused when it is easy to guess, or made for you.

The rule it keeps: a keystore is never sealed under a passphrase that zxcvbn
scores below 3 of 4 (roughly: more than 10^8 guesses needed); the refusal
says why, in zxcvbn's own words, and what to do instead. A generated
passphrase is six words drawn with `secrets` from the EFF large wordlist
(client/wordlist.txt, 7,776 words): 6 × log2(7776) ≈ 77.5 bits.

Only a new keystore's passphrase is judged (`init`, `join` into a new home):
an existing keystore opens with whatever it was sealed under.
"""

from __future__ import annotations

import secrets
from functools import cache
from importlib import resources

from client.errors import ClientError

MIN_SCORE = 3
GENERATED_WORDS = 6
# zxcvbn's running time grows with length; what follows 100 characters adds
# strength it would only under-count, never a weakness it would miss.
_JUDGED_CHARS = 100


def check_strength(passphrase: str) -> None:
    """Raise weak_passphrase (with zxcvbn's warning and suggestions) below score 3."""
    from zxcvbn import zxcvbn  # only a new keystore pays for loading its dictionaries

    result = zxcvbn(passphrase[:_JUDGED_CHARS], user_inputs=["spokes"])
    score = int(result["score"])
    if score >= MIN_SCORE:
        return
    feedback = result.get("feedback") or {}
    reasons = [str(feedback.get("warning") or "").strip()]
    reasons += [str(s).strip() for s in feedback.get("suggestions") or []]
    said = " ".join(r if r.endswith(".") else r + "." for r in reasons if r)
    raise ClientError(
        "weak_passphrase",
        f"That passphrase is too easy to guess (strength {score} of 4; {MIN_SCORE} needed). "
        + (said + " " if said else "")
        + "Nothing was written. Choose a longer one (several uncommon words), "
        "or run again with --generate-passphrase.",
    )


def generate(count: int = GENERATED_WORDS) -> str:
    """Six words from the EFF large wordlist, chosen with `secrets`, separated by spaces."""
    words = wordlist()
    return " ".join(secrets.choice(words) for _ in range(count))


@cache
def wordlist() -> tuple[str, ...]:
    text = resources.files("client").joinpath("wordlist.txt").read_text("utf-8")
    words = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if len(set(words)) < 2048:
        raise RuntimeError("client/wordlist.txt is damaged: fewer than 2,048 distinct words")
    return words
