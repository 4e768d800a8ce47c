"""Profiles for one member: sealing mine in each group, reading my groups' members'.

The rule it keeps: my profile is sealed under each group's current epoch
key, again after every new epoch (DESIGN §7, duty c), with a version that
goes up with every change; a profile older than one already seen from the
same member is the lying alarm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from client import api
from client.epochs import Epochs
from client.groups import GroupRecord, epoch_infos, lying
from client.rosters import Rosters
from client.sdk import Client
from crypto.encoding import Value, b32e
from crypto.errors import DecryptionFailed, InvalidStatement
from crypto.keys import member_id_text, parse_member_id
from crypto.messages import open_profile, seal_profile
from crypto.roster import RosterState


@dataclass(frozen=True)
class MemberView:
    member_id: str
    name: str | None
    contact: str | None
    notes: str | None


class Profiles:
    """My profile in my groups, and theirs."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)
        self.epochs = Epochs(client)

    async def reseal(self, record: GroupRecord, state: RosterState) -> bool:
        """Seal my profile under the group's current epoch unless it already is; True if so."""
        profile = self.client.state.profile
        if profile is None or state.needs_rekey or state.epoch == 0:
            return False
        if record.profile_epoch == state.epoch:
            return True
        keys = record.epochs.get(state.epoch)
        if keys is None:
            return False
        content: dict[str, Value] = {k: v for k, v in profile.items()}
        sealed = seal_profile(
            keys.keys.profile_key,
            state.group,
            state.epoch,
            self.client.state.identity,
            content,
            version=max(1, self.client.state.profile_version),  # the same profile keeps it
        )
        await self.client.call(api.put_profile(state.group, state.epoch, sealed))
        record.profile_epoch = state.epoch
        self.client.save()
        return True

    async def seal_mine(self, record: GroupRecord, state: RosterState) -> RosterState:
        """My profile sealed in a group I am in, under an epoch that covers its roster.

        Duties (b) and (c) for a reader: a cell a split just made has no epoch
        until its first sender commits one, and one whose roster changed has
        none that covers it; either way my cellmates would see me without a
        name, so my client commits the epoch (as a sender's would) and seals
        my profile under it. Nothing happens without a profile of mine.
        """
        if self.client.state.profile is None or self.client.me not in state.members:
            return state
        if record.profile_epoch == state.epoch and not state.needs_rekey:
            return state
        state = await self.epochs.ready_to_send(record, state)
        await self.reseal(record, state)
        return state

    async def members(self, group_text: str) -> list[MemberView]:
        group = await self.rosters.group(group_text)
        record, state = await self.rosters.sync_roster(group)
        state = await self.seal_mine(record, state)
        # A cell a split moved me out of: those who stayed, as its log stood at the
        # split, with the names last verified there (its profiles are not served to me).
        opened = (
            await self.opened(record, state)
            if record.left_at is None
            else {m: {"name": n} for m, n in record.names.items()}
        )
        views = [
            MemberView(
                member_id=member_id_text(member),
                name=_text(opened.get(member, {}).get("name")),
                contact=_text(opened.get(member, {}).get("contact")),
                notes=_text(opened.get(member, {}).get("notes")),
            )
            for member in sorted(state.members)
        ]
        self.client.save()
        return views

    async def names(self, record: GroupRecord, state: RosterState) -> Names:
        """The names this client can verify in the group, for showing who is who.

        Fresh from the members' sealed profiles when this member may fetch
        them, and the last verified names otherwise (a group left by a split
        keeps the names its history was written under).
        """
        if record.names_stale and self.client.state.member_id in state.members:
            await self.opened(record, state)
            record.names_stale = False
        return Names(dict(record.names))

    async def names_of(self, group_text: str) -> Names:
        group = await self.rosters.group(group_text)
        record, state = await self.rosters.sync_roster(group)
        names = await self.names(record, state)
        self.client.save()
        return names

    async def known_names(self) -> dict[str, dict[bytes, str]]:
        """Verified names in each group this client verified (by group id text), refreshed."""
        known = {}
        for group in await self.rosters.sync_groups():
            record, state = await self.rosters.sync_roster(group)
            known[b32e(group)] = (await self.names(record, state)).verified
        return known

    async def opened(
        self, record: GroupRecord, state: RosterState
    ) -> dict[bytes, dict[str, Value]]:
        """Every current member's profile that opens and verifies, by member id.

        A profile counts only if it opens under an epoch key of this group
        and carries the member's signature (crypto.messages.open_profile),
        and is not older than one seen before; any other is left out.
        """
        infos = epoch_infos(record.events, rules=self.client.rules())
        sealed = {
            p.member_id.lower(): p
            for p in api.parse_profiles(await self.client.call(api.group_profiles(state.group)))
        }
        opened: dict[bytes, dict[str, Value]] = {}
        for member in sorted(state.members):
            found = sealed.get(member_id_text(member))
            info = None if found is None else infos.get(found.epoch)
            if found is None or info is None:
                continue
            keys = await self.epochs.open_epoch(record, found.epoch, info)
            if keys is None:
                continue
            try:
                profile, version = open_profile(
                    keys.keys.profile_key,
                    state.group,
                    found.epoch,
                    state.members[member].key,
                    found.sealed,
                )
            except DecryptionFailed:
                continue
            self._check_profile_version(record, member, version)
            opened[member] = profile
            name = _text(profile.get("name"))
            if name is not None:
                record.names[member] = name
        return opened

    @staticmethod
    def _check_profile_version(record: GroupRecord, member: bytes, version: int) -> None:
        """Refuse a profile older than one already seen from this member in this group.

        A member's client seals every change with a higher version and re-seals
        the same profile for a new epoch with the same one, and the server keeps
        one profile per member and group: an older version served is a replay,
        and raises the alarm rather than being shown as current.
        """
        seen = record.profile_versions.get(member, 0)
        if version < seen:
            raise lying(
                f"the server served version {version} of {member_id_text(member)}'s profile, "
                f"older than version {seen} this client already saw"
            )
        record.profile_versions[member] = version

    async def set_profile(self, name: str, contact: str | None, notes: str | None) -> int:
        profile: dict[str, str | None] = {"name": name, "contact": contact, "notes": notes}
        # A new version for every change, saved before anything is sealed with it.
        version = max(1, self.client.state.profile_version + 1)
        self.client.save(replace(self.client.state, profile=profile, profile_version=version))
        uploaded = 0
        # Only groups whose membership this client verified: a group the server
        # merely lists (one an informant made up around me) gets nothing.
        for group in await self.rosters.sync_groups():
            record, state = await self.rosters.sync_roster(group)
            record.profile_epoch = 0  # the profile changed: seal it again everywhere
            state = await self.epochs.ready_to_send(record, state)
            await self.reseal(record, state)
            uploaded += 1
        self.client.save()
        return uploaded


@dataclass(frozen=True)
class Names:
    """Who is who in one group, as far as this client could verify their profiles."""

    verified: dict[bytes, str]

    def of(self, member: bytes) -> str:
        """A verified name, else a short id marked as one: `(id 3vq5r4vesz)`."""
        name = self.verified.get(member)
        return name if name is not None else f"(id {member_id_text(member)[:10]})"

    def of_text(self, member_text: str) -> str:
        try:
            member = parse_member_id(member_text)
        except InvalidStatement:
            return f"(id {member_text[:10]})"
        return self.of(member)


def _text(value: Value | None) -> str | None:
    return value if isinstance(value, str) else None
