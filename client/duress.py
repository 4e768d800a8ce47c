"""Self-revocation against a seized device (`spokes duress`), for one member's client.

The rule it keeps: a member signs the revocation of their own key now and
seals it (HPKE) to one cellmate they name, whose key this client takes from
the cell's roster log it verified; it travels inside an ordinary cell
message, so the server sees only a message. The holder's client keeps it
(client/messages.py) and publishes it on the holder's word: the revocation
at the head of the chain as the holder's client verified it, signed by the
holder, carrying the maker's own statement. It takes effect like an
expulsion at once (the maker's sessions and sockets end, every group
removes them), with no review and no sponsor penalty.
"""

from __future__ import annotations

from typing import Any

from client import api
from client.errors import ClientError, ServerError
from client.groups import lying
from client.messages import Messages
from client.revocations import Revocations
from client.rosters import Rosters
from client.sdk import Client, parse_member
from crypto.chains import make_revocation, verify_revocation_list
from crypto.encoding import Value, b32e
from crypto.exclusion import make_self_revocation, seal_self_revocation
from crypto.keys import member_id_text
from crypto.sealing import KemPublicKey, KemSuite
from crypto.statements import pack

NOTE = "(a sealed note for one member of the cell)"


class Duress:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)

    async def make(self, holder_text: str) -> dict[str, Any]:
        """Sign my own revocation now and seal it, in a cell message, for `holder`."""
        holder = parse_member(holder_text)
        if holder == self.client.me:
            raise ClientError("not_allowed", "Name a cellmate you trust, not yourself.")
        _, cell = self.client.network()
        group = await self.rosters.group("cell")
        _, state = await self.rosters.sync_roster(group)
        member = state.members.get(holder)
        if member is None:
            raise ClientError(
                "not_in_group",
                f"{member_id_text(holder)} is not on your cell's roster; the holder is a "
                "cellmate (`spokes members cell`).",
            )
        held = make_self_revocation(
            self.client.state.identity, self.client.network_id(), holder, self.client.now()
        )
        public = KemPublicKey.from_bytes(KemSuite(member.kem_suite), member.kem_public)
        sealed: dict[str, Value] = {"holder": holder, "box": seal_self_revocation(held, public)}
        sent = await Messages(self.client).send("cell", NOTE, {"duress": sealed})
        return {
            "holder": member_id_text(holder),
            "message_id": sent.get("message_id"),
            "status": "sealed",
        }

    async def held(self) -> list[dict[str, Any]]:
        """The self-revocations I hold, after reading my cell (where they arrive sealed)."""
        await Messages(self.client).catch_up(self.client.network()[1])
        return [
            {"member_id": member_id_text(maker), "signed_at": statement.time}
            for maker, statement in sorted(self.client.state.held.items())
        ]

    async def publish(self, member_text: str) -> dict[str, Any]:
        """Publish the self-revocation `member` sealed for me: their key is revoked at once."""
        maker = parse_member(member_text)
        await Messages(self.client).catch_up(self.client.network()[1])
        held = self.client.state.held.get(maker)
        if held is None:
            raise ClientError(
                "not_holder",
                f"You hold no self-revocation of {member_id_text(maker)}: only the cellmate "
                "they sealed it for can publish it (`spokes duress list`).",
            )
        genesis, _ = self.client.network()
        revocations = Revocations(self.client)
        grounds: dict[str, Value] = {"grounds": "self", "self": pack(held)}
        for attempt in range(3):
            listed = await revocations.fetch()
            if maker in listed.by_subject:
                raise ClientError("already_revoked", f"{member_id_text(maker)} is already revoked.")
            seq, prev = listed.next_position()
            revocation = make_revocation(
                self.client.state.identity,
                genesis.network_id,
                maker,
                self.client.now(),
                seq=seq,
                prev=prev,
                grounds=grounds,
            )
            try:
                answer = await self.client.call(api.post_revocation(revocation.statement))
            except ServerError as exc:
                if exc.code == "stale_head" and attempt < 2:
                    continue
                raise
            if not isinstance(answer, dict) or answer.get("revocation_id") != b32e(
                revocation.statement.id
            ):
                raise lying("the server acknowledged another revocation than the one sent")
            revocations.accept(
                verify_revocation_list(
                    genesis, [*(r.statement for r in listed.revocations), revocation.statement]
                )
            )
            break
        self.client.state.held.pop(maker, None)
        await self.rosters.sync_cell()  # takes them off the cell's roster
        self.client.save()
        return {"member_id": member_id_text(maker), "status": "revoked_by_self", "seq": seq}
