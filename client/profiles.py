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
from crypto.encoding import Value
from crypto.errors import DecryptionFailed
from crypto.keys import member_id_text
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

    async def members(self, group_text: str) -> list[MemberView]:
        group = await self.rosters.group(group_text)
        record, state = await self.rosters.sync_roster(group)
        infos = epoch_infos(record.events, rules=self.client.rules())
        sealed = {
            p.member_id.lower(): p
            for p in api.parse_profiles(await self.client.call(api.group_profiles(group)))
        }
        views = []
        for member in sorted(state.members):
            profile: dict[str, Value] = {}
            found = sealed.get(member_id_text(member))
            info = None if found is None else infos.get(found.epoch)
            if found is not None and info is not None:
                keys = await self.epochs.open_epoch(record, found.epoch, info)
                if keys is not None:
                    try:
                        profile, version = open_profile(
                            keys.keys.profile_key,
                            group,
                            found.epoch,
                            state.members[member].key,
                            found.sealed,
                        )
                    except DecryptionFailed:
                        profile = {}
                    else:
                        self._check_profile_version(record, member, version)
            views.append(
                MemberView(
                    member_id=member_id_text(member),
                    name=_text(profile.get("name")),
                    contact=_text(profile.get("contact")),
                    notes=_text(profile.get("notes")),
                )
            )
        self.client.save()
        return views

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
        await self.rosters.sync_cell()
        uploaded = 0
        # Only groups whose membership this client verified: a group the server
        # merely lists (one an informant made up around me) gets nothing.
        for group in self.rosters.verified_groups():
            record, state = await self.rosters.sync_roster(group)
            record.profile_epoch = 0  # the profile changed: seal it again everywhere
            state = await self.epochs.ready_to_send(record, state)
            await self.reseal(record, state)
            uploaded += 1
        self.client.save()
        return uploaded


def _text(value: Value | None) -> str | None:
    return value if isinstance(value, str) else None
