"""Members played by tests: real keys, real statements, the real HTTP API.

The actor itself lives in bench/actors.py, which the benchmark uses too;
here are the tests' own helpers around it.
"""

from __future__ import annotations

from typing import Any

from bench.actors import Actor, Reply, from_b64

__all__ = ["TABLES", "Actor", "Reply", "bring_in", "from_b64", "table_counts"]


async def bring_in(inviter: Actor, newcomer: Actor, *vouchers: Actor) -> None:
    """Invite, join, admit and vouch: the whole happy path for one newcomer."""
    code, reply = await inviter.invite()
    assert reply.status == 201, reply.body
    assert (await newcomer.join(code, inviter)).status == 201
    assert (await inviter.admit(newcomer, code)).status == 201
    for voucher in vouchers:
        reply = await voucher.verdict("vouch", newcomer)
        assert reply.status == 201, reply.body


TABLES = (
    "networks",
    "statements",
    "groups",
    "members",
    "invites",
    "admissions",
    "vouches",
    "blocks",
    "revocations",
    "sessions",
)


async def table_counts(pool: Any, tables: tuple[str, ...] = TABLES) -> dict[str, int]:
    async with pool.acquire() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}  # noqa: S608
