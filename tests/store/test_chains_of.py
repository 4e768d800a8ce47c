"""server/store/admissions.py: `chains_of` answers in one query what `chain_of` answers per member."""

from __future__ import annotations

from crypto.keys import IdentityKey
from server.store import admissions
from tests.store.conftest import Rows
from tests.store.test_admissions import certify


async def test_chains_of_many_members_are_each_members_chain(rows: Rows) -> None:
    cell = await rows.group()
    steward = await rows.member(cell)
    # Two branches under the steward, of depths 1 to 3 and 1 to 2.
    line = [steward]
    for _ in range(3):
        member = await rows.member(cell, inviter=line[-1].member_id)
        await certify(rows, cell, line[-1], member)
        line.append(member)
    branch = await rows.member(cell, inviter=steward.member_id)
    await certify(rows, cell, steward, branch)
    leaf = await rows.member(cell, inviter=branch.member_id)
    await certify(rows, cell, branch, leaf)
    uncertified = await rows.member(cell, admitted_at=None, inviter=leaf.member_id)
    unknown = IdentityKey.generate()

    keys = [*line, branch, leaf, uncertified, unknown]
    ids = [key.member_id for key in keys]
    # Shuffled, with a repeat: the answer follows the first appearance of each id.
    asked = [ids[3], ids[0], ids[5], ids[3], ids[6], ids[7], ids[1], ids[4], ids[2]]
    batched = await admissions.chains_of(rows.conn, asked)
    assert list(batched) == list(dict.fromkeys(asked))
    for member_id in ids:
        assert batched[member_id] == await admissions.chain_of(rows.conn, member_id)
    depths = {key.member_id: len(batched[key.member_id]) for key in keys}
    assert [depths[m] for m in ids] == [0, 1, 2, 3, 1, 2, 0, 0]
    # Two members' chains share their upper links, each listed in full.
    assert batched[ids[3]][1:] == batched[ids[2]]
    assert batched[ids[5]][1:] == batched[ids[4]]
    assert await admissions.chains_of(rows.conn, []) == {}
