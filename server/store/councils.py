"""SQL for ``council_seats``: which linked group holds which seat of which council, by whom.

An index of the councils' roster logs (the logs are the truth), written in
the transaction that appends the council event that changes a seat.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.store.db import Connection


@dataclass(frozen=True)
class SeatRow:
    council_id: bytes
    group_id: bytes
    holder: bytes | None
    link_id: bytes
    link_seq: int


async def put_seat(conn: Connection, seat: SeatRow) -> None:
    await conn.execute(
        """INSERT INTO council_seats (council_id, group_id, holder, link_id, link_seq)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (council_id, group_id)
           DO UPDATE SET holder = $3, link_id = $4, link_seq = $5""",
        seat.council_id,
        seat.group_id,
        seat.holder,
        seat.link_id,
        seat.link_seq,
    )


async def seats_of_group(conn: Connection, group_id: bytes) -> list[SeatRow]:
    """The seats `group_id` holds, one per council it is linked to."""
    rows = await conn.fetch(
        """SELECT council_id, group_id, holder, link_id, link_seq FROM council_seats
           WHERE group_id = $1 ORDER BY council_id""",
        group_id,
    )
    return [SeatRow(**dict(r)) for r in rows]
