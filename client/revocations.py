"""The network's revocation chain (PROTOCOL §7) for one member: verified from seq 0,
carried forward, and extended by a steward.

The rule it keeps: the chain this client verified only ever grows; a
shorter one, or another revocation at a seq already known, is the lying
alarm, and so is a server that cannot show the head a cellmate's message
names.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from client import api, verify
from client.errors import ClientError, ServerError
from client.groups import lying
from client.sdk import Client, parse_member
from crypto.chains import RevocationHead, RevocationList, make_revocation, verify_revocation_list
from crypto.encoding import Value, b32e
from crypto.keys import member_id_text


class Revocations:
    """The revocation chain as this client knows it."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def head(self) -> Value:
        """[seq, id] of the last revocation this client verified, or None: sent in messages."""
        known = self.client.state.revocations
        return None if not known else RevocationHead(len(known) - 1, known[-1]).to_value()

    def accept(self, listed: RevocationList, *, save: bool = True) -> None:
        """Take a verified chain only if it begins with every revocation verified before.

        Shorter (a revocation withheld, the list rolled back) or another
        revocation at a seq already known (a fork) is the lying alarm. A
        longer chain becomes the known one; `save=False` keeps it in memory
        for the caller's own save (reading, where records are mid-change).
        """
        known = self.client.state.revocations
        found = listed.check_known(known)
        if found == "holds":
            self.client.revoked = listed.by_subject
        if found == "missing":
            raise lying(
                f"the server shows {len(listed.revocations)} revocation(s), fewer than the "
                f"{len(known)} this client verified before: it withholds a revocation or "
                "rolled the revocation list back"
            )
        if found == "forked":
            raise lying(
                "the server shows a revocation list that forks from the one this client "
                "verified before: members are being shown different revocations"
            )
        if len(listed.ids) > len(known):
            state = replace(self.client.state, revocations=listed.ids)
            if save:
                self.client.save(state)
            else:
                self.client.state = state

    async def fetch(self, *, save: bool = True) -> RevocationList:
        """The network's revocation chain from the server, verified and checked against mine."""
        genesis, _ = self.client.network()
        data = await self.client.call(api.revocation_list())
        listed = verify.revocation_list(genesis, api.parse_revocation_list(data))
        self.accept(listed, save=save)
        return listed

    async def check_head(self, head: RevocationHead, sender: bytes) -> None:
        """A cellmate's message names the revocation head they knew: it must be on my chain.

        A head beyond mine makes me fetch the chain, which must reach exactly
        that head; the server's failing to show it means it hides a revocation
        from me that a cellmate has seen.
        """
        known = self.client.state.revocations
        who = member_id_text(sender)
        if head.seq < len(known):
            if known[head.seq] != head.id:
                raise lying(
                    f"{who} knows another revocation at seq {head.seq} than this client: "
                    "the server forked the revocation list"
                )
            return
        genesis, _ = self.client.network()
        data = await self.client.call(api.revocation_list())
        listed = verify.revocation_list(genesis, api.parse_revocation_list(data))
        found = listed.check(head)
        if found == "missing":
            raise lying(
                f"the server withholds a revocation that a cellmate has seen: {who} knows "
                f"{head.seq + 1} revocation(s), the server shows {len(listed.revocations)}"
            )
        if found == "forked":
            raise lying(
                f"{who} knows another revocation at seq {head.seq} than the server shows: "
                "the server forked the revocation list"
            )
        self.accept(listed, save=False)

    async def revoke(self, member_text: str) -> dict[str, Any]:
        """A steward signs the next revocation of the chain, after verifying the chain."""
        genesis, _ = self.client.network()
        subject = parse_member(member_text)
        me = self.client.state.identity
        if me.member_id not in genesis.steward_ids:
            raise ClientError(
                "not_steward",
                "Only a steward named in the network's genesis can revoke a member; "
                "nothing was signed.",
            )
        for attempt in range(2):
            listed = await self.fetch()
            if subject in listed.by_subject:
                raise ClientError(
                    "already_revoked", f"{member_id_text(subject)} is already revoked."
                )
            seq, prev = listed.next_position()
            revocation = make_revocation(
                me, genesis.network_id, subject, self.client.now(), seq=seq, prev=prev
            )
            try:
                answer = await self.client.call(api.post_revocation(revocation.statement))
            except ServerError as exc:
                if exc.code == "stale_head" and attempt == 0:
                    continue  # another steward was first: verify the longer chain, sign again
                raise
            if not isinstance(answer, dict) or answer.get("revocation_id") != b32e(
                revocation.statement.id
            ):
                raise lying("the server acknowledged another revocation than the one sent")
            extended = verify_revocation_list(
                genesis, [*(r.statement for r in listed.revocations), revocation.statement]
            )
            self.accept(extended)
            return {
                "member_id": member_id_text(subject),
                "status": "revoked",
                "seq": seq,
                "revocation_id": b32e(revocation.statement.id),
            }
        raise AssertionError("unreachable")
