"""Epochs for one member: committing a new one, and opening my keys of each.

The rule it keeps: the first sender after the roster changed commits the
new epoch (DESIGN §7, duty b); an epoch secret is forgotten as soon as the
keys it yields are derived, and a sealed key is believed only if it matches
the commitment its signed epoch event carries.
"""

from __future__ import annotations

from client import api
from client.errors import ClientError, ServerError
from client.groups import EpochInfo, EpochRecord, GroupRecord, epoch_infos, lying, new_epoch_record
from client.rosters import Rosters
from client.sdk import Client
from crypto import epochs, roster
from crypto.errors import CryptoError
from crypto.roster import RosterState

# From this many members, sealing a new key period takes long enough to say so.
SAY_SEALING_AT = 8


class Epochs:
    """The keys of my groups' epochs."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)

    async def ready_to_send(
        self, record: GroupRecord, state: RosterState, *, retire: int | None = None
    ) -> RosterState:
        """Make sure the group has a current epoch that I hold keys for.

        Duty (c), sealing my profile again under it, is the caller's next step
        (client/profiles.py `reseal`): sending and setting a profile do both.
        `retire` names an epoch the server refused as past the policy's age or
        message limit: if it is still the current one, commit the next.
        """
        if state.needs_rekey or (retire is not None and state.epoch == retire):
            state = await self.commit_epoch(record, state)
        if state.needs_rekey:
            raise ClientError(
                "rekey_failed",
                "The group's next key period could not be started (another member's client may "
                "have been starting it at the same moment); run the command again.",
            )
        infos = epoch_infos(record.events, rules=self.client.rules())
        await self.open_epoch(record, state.epoch, infos[state.epoch])
        return state

    async def commit_epoch(self, record: GroupRecord, state: RosterState) -> RosterState:
        """Commit the next epoch (its secret sealed to every member), or take another's."""
        identity = self.client.state.identity
        if len(state.members) >= SAY_SEALING_AT:
            self.client.progress(
                f"Starting a new key period: sealing its secret to {len(state.members)} members…"
            )
        for attempt in range(2):
            secret = epochs.new_epoch_secret()
            epoch, group = state.epoch + 1, state.group
            commit = epochs.commit_next_epoch(secret, state)
            event = roster.sign_event(
                identity, self.client.network_id(), state, "epoch", self.client.now(), commit.fields
            )
            try:
                await self.client.call(api.post_roster_event(group, event, commit.boxes))
            except ServerError as exc:
                if exc.code != "stale_head" or attempt == 1:
                    raise
                # Another member changed the log first: look again, once.
                before = state.epoch
                record, state = await self.rosters.sync_roster(group)
                if not state.needs_rekey and state.epoch > before:
                    return state
                continue
            keys = epochs.derive_epoch_keys(secret, group, epoch, state.readers)
            del secret  # the chains and profile key are all that is kept
            record.epochs[epoch] = new_epoch_record(keys, self.client.me)
            self.client.save()
            break
        _, state = await self.rosters.sync_roster(state.group)
        return state

    async def open_epoch(
        self, record: GroupRecord, epoch: int, info: EpochInfo
    ) -> EpochRecord | None:
        """My keys of `epoch`, from my sealed box; None for an epoch from before I joined."""
        if epoch in record.epochs:
            return record.epochs[epoch]
        if self.client.me not in info.members:
            record.unreadable.add(epoch)
            return None
        group = record.group_id
        try:
            sealed = api.parse_sealed(await self.client.call(api.epoch_secret(group, epoch)))
        except ServerError as exc:
            if exc.code == "not_found":
                raise lying(
                    f"the server withholds your key for key period {epoch}, whose signed roster "
                    "includes you"
                ) from None
            raise
        try:
            secret = epochs.open_secret(
                self.client.state.kem,
                sealed,
                group,
                epoch,
                info.roster_hash,
                self.client.me,
                info.commitment,
            )
        except CryptoError:
            raise lying(
                f"your sealed key for key period {epoch} does not match the commitment its "
                "signed roster event carries (someone other than a member sealed it)"
            ) from None
        keys = epochs.derive_epoch_keys(secret, group, epoch, info.members)
        del secret
        record.epochs[epoch] = new_epoch_record(keys, self.client.me)
        return record.epochs[epoch]
