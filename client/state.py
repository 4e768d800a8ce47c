"""The local home folder: one passphrase-sealed file, `keystore`.

The rule it keeps: everything the client knows about itself (private keys,
the pinned genesis, its own chain, its session) lives in that one file,
sealed with crypto.keystore, and the file is only ever replaced whole: a
temporary file is written, synced and renamed over it, so a crash leaves
the old keystore or the new one, never half of each. The file is mode 0600.

One writer at a time (DESIGN §7): the keystore is written only while this
process holds the home's exclusive lock (flock on `lock`, mode 0600), and
only after it read the keystore under that same hold, so no process ever
writes back state another one has since changed. A stale write raises.

What is stored is re-verified when it is read (statements go through
crypto/ again), so a tampered file can't smuggle in a statement that a
fresh one could not.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from client.errors import ClientError
from client.groups import GroupRecord
from crypto.chains import Admission, parse_admission
from crypto.encoding import Value, decode, encode
from crypto.errors import CryptoError, KeystoreError
from crypto.keys import IdentityKey
from crypto.keystore import (
    KdfParams,
    KeystoreKey,
    derive_key,
    new_key,
    open_with_key,
    seal_with_key,
)
from crypto.messages import Header, SealedMessage
from crypto.network import Genesis, KeyBundle, parse_key_bundle, verify_genesis
from crypto.sealing import KemPrivateKey, KemSuite
from crypto.statements import Statement, pack, unpack

# What opens the keystore: the passphrase, or the key it derives (as an
# unlocked agent holds it, client/agent.py).
Secret = str | KeystoreKey

KEYSTORE_FILE = "keystore"
LOCK_FILE = "lock"
LOCK_POLL_SECONDS = 0.02
FORMAT = 1


def default_home() -> Path:
    """--home wins over this: SPOKES_HOME, else ~/.spokes."""
    env = os.environ.get("SPOKES_HOME")
    return Path(env) if env else Path.home() / ".spokes"


@dataclass(frozen=True)
class Session:
    token: str
    expires_at: int


@dataclass(frozen=True)
class InviteRecord:
    """An invite this member made; the note stays on this device."""

    note: str
    expires_at: int


@dataclass(frozen=True)
class Outgoing:
    """A sealed message that may have reached the server (its answer did not come back).

    It is re-posted byte for byte until the server answers: the server takes
    the same bytes again as the message it stored, so no one reads it twice.
    """

    group_id: bytes
    message: SealedMessage

    @property
    def header(self) -> Header:
        return Header.decode(self.message.header)

    def to_value(self) -> dict[str, Value]:
        m = self.message
        return {
            "group": self.group_id,
            "header": m.header,
            "ciphertext": m.ciphertext,
            "signature": m.signature,
        }

    @classmethod
    def from_value(cls, value: Value) -> Outgoing:
        raw = cast(dict[str, bytes], value)
        message = SealedMessage(raw["header"], raw["ciphertext"], raw["signature"])
        outgoing = cls(raw["group"], message)
        if outgoing.header.group != outgoing.group_id:
            raise ValueError("an outbox message names another group")
        return outgoing


@dataclass(frozen=True)
class State:
    """What one member's client knows; replace it whole to change it."""

    identity: IdentityKey
    kem: KemPrivateKey
    server: str
    genesis: Genesis | None = None
    network_name: str | None = None
    chain: tuple[Admission, ...] = ()
    key_bundle: KeyBundle | None = None
    cell_id: bytes | None = None
    session: Session | None = None
    invites: dict[str, InviteRecord] = field(default_factory=dict)
    # Per group: the verified roster log, epoch keys, cursor and read history
    # (client/groups.py). The records are working objects: a command changes
    # them, then saves a new State holding them.
    groups: dict[bytes, GroupRecord] = field(default_factory=dict)
    # My profile as I set it; sealed per group under each epoch's profile key.
    profile: dict[str, str | None] | None = None
    # How many times I changed it: sealed with it, so readers refuse an older one.
    profile_version: int = 0
    # Splits I signed: new cell id -> the cell it splits from.
    splits: dict[bytes, bytes] = field(default_factory=dict)
    # Sealed messages posted but not acknowledged, oldest first (client/messages.py).
    outbox: tuple[Outgoing, ...] = ()
    # The ids of the network's revocation chain as far as this client verified
    # it (seq 0 first): a list the server shows later must begin with these
    # (PROTOCOL §7, "The revocation chain"), and messages carry its head.
    revocations: tuple[bytes, ...] = ()
    # My blocks: admission certificate id -> my block's signed time. A roster
    # that adds that newcomer later means my block was withheld from the cell.
    blocked: dict[bytes, int] = field(default_factory=dict)
    # Self-revocations cellmates sealed for me to hold (`spokes duress`), by
    # their maker: published if the maker is arrested or loses their device.
    held: dict[bytes, Statement] = field(default_factory=dict)

    @property
    def member_id(self) -> bytes:
        return self.identity.member_id

    @property
    def network_id(self) -> bytes | None:
        return None if self.genesis is None else self.genesis.network_id

    def record(self, group: bytes) -> GroupRecord:
        """The working record of `group`, made empty the first time it is asked for."""
        if group not in self.groups:
            self.groups[group] = GroupRecord(group)
        return self.groups[group]

    def to_value(self) -> dict[str, Value]:
        return {
            "format": FORMAT,
            "identity": self.identity.private_bytes(),
            "kem_suite": self.kem.suite.value,
            "kem_private": self.kem.private_bytes(),
            "server": self.server,
            "member_id": self.member_id,
            "network_id": self.network_id,
            "genesis": None if self.genesis is None else pack(self.genesis.statement),
            "network_name": self.network_name,
            "chain": [pack(link.statement) for link in self.chain],
            "key_bundle": None if self.key_bundle is None else pack(self.key_bundle.statement),
            "cell_id": self.cell_id,
            "session": None
            if self.session is None
            else {"token": self.session.token, "expires_at": self.session.expires_at},
            "invites": {
                lookup: {"note": record.note, "expires_at": record.expires_at}
                for lookup, record in self.invites.items()
            },
            "groups": {g.hex(): record.to_value() for g, record in self.groups.items()},
            "profile": None if self.profile is None else dict[str, Value](self.profile),
            "profile_version": self.profile_version,
            "splits": {new.hex(): old for new, old in self.splits.items()},
            "outbox": [o.to_value() for o in self.outbox],
            "revocations": list[Value](self.revocations),
            "blocked": {admission.hex(): at for admission, at in self.blocked.items()},
            "held": {maker.hex(): pack(held) for maker, held in self.held.items()},
        }

    @classmethod
    def from_value(cls, value: Value) -> State:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise ValueError("unknown keystore format")
        identity = IdentityKey.from_private_bytes(cast(bytes, value["identity"]))
        if identity.member_id != value["member_id"]:
            raise ValueError("identity key does not match the member id")
        kem = KemPrivateKey.from_private_bytes(
            KemSuite(cast(str, value["kem_suite"])), cast(bytes, value["kem_private"])
        )
        genesis = None
        network = cast("bytes | None", value["network_id"])
        if value["genesis"] is not None:
            body, signature = cast(list[bytes], value["genesis"])
            genesis = verify_genesis(body, signature, network)
        chain = tuple(
            parse_admission(unpack(item, "admission", network))
            for item in cast(list[Value], value["chain"])
        )
        bundle = None
        if value["key_bundle"] is not None:
            bundle = parse_key_bundle(unpack(value["key_bundle"], "key-bundle", network))
        session = None
        if value["session"] is not None:
            raw = cast(dict[str, Value], value["session"])
            session = Session(cast(str, raw["token"]), cast(int, raw["expires_at"]))
        invites = {
            lookup: InviteRecord(cast(str, rec["note"]), cast(int, rec["expires_at"]))
            for lookup, rec in cast(dict[str, dict[str, Value]], value["invites"]).items()
        }
        groups = {
            bytes.fromhex(g): GroupRecord.from_value(bytes.fromhex(g), record, network)
            for g, record in cast(dict[str, Value], value.get("groups") or {}).items()
        }
        splits = {
            bytes.fromhex(new): cast(bytes, old)
            for new, old in cast(dict[str, Value], value.get("splits") or {}).items()
        }
        outbox = tuple(
            Outgoing.from_value(item) for item in cast(list[Value], value.get("outbox") or [])
        )
        revocations = tuple(cast(list[bytes], value.get("revocations") or []))
        if any(not isinstance(r, bytes) or len(r) != 32 for r in revocations):
            raise ValueError("a known revocation id is not 32 bytes")
        blocked = {
            bytes.fromhex(admission): cast(int, at)
            for admission, at in cast(dict[str, Value], value.get("blocked") or {}).items()
        }
        held = {
            bytes.fromhex(maker): unpack(packed, "self-revocation", network)
            for maker, packed in cast(dict[str, Value], value.get("held") or {}).items()
        }
        return cls(
            held=held,
            blocked=blocked,
            revocations=revocations,
            outbox=outbox,
            groups=groups,
            profile=None if value.get("profile") is None else dict(value["profile"]),  # type: ignore[arg-type]
            profile_version=cast(int, value.get("profile_version", 0)),
            splits=splits,
            identity=identity,
            kem=kem,
            server=cast(str, value["server"]),
            genesis=genesis,
            network_name=cast("str | None", value["network_name"]),
            chain=chain,
            key_bundle=bundle,
            cell_id=cast("bytes | None", value["cell_id"]),
            session=session,
            invites=invites,
        )


class StateFile:
    """The sealed keystore file in one home folder, and the lock that guards it.

    The Argon2id key is derived once per process and kept in memory, so that
    re-reading under each new hold of the lock (`spokes watch`) is cheap. A
    `Secret` is the passphrase, or that key itself (from an unlocked agent):
    with a key, nothing is derived at all.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / KEYSTORE_FILE
        self.lock_path = home / LOCK_FILE
        self._key: KeystoreKey | None = None
        self._key_secret: Secret | None = None  # what the kept key was derived from
        self._lock_fd: int | None = None
        self._fresh = False  # read or written since this hold of the lock began
        # The last keystore read or written: sealed, plain, decoded.
        self._kept: tuple[bytes, bytes, Value] | None = None

    def exists(self) -> bool:
        return self.path.exists()

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    @contextmanager
    def lock(self, *, create: bool = False) -> Iterator[None]:
        """Hold the home's exclusive lock, waiting while another process holds it.

        `create` makes the home folder if it is missing (init, join); without
        it a missing home is reported as a missing keystore.
        """
        fd = self._open_lock(create)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._held(fd)
            yield
        finally:
            self._release(fd)

    @asynccontextmanager
    async def lock_async(self) -> AsyncIterator[None]:
        """As `lock`, waiting without blocking the event loop (a live feed stays served)."""
        fd = self._open_lock(False)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(LOCK_POLL_SECONDS)
            self._held(fd)
            yield
        finally:
            self._release(fd)

    def _open_lock(self, create: bool) -> int:
        if self._lock_fd is not None:
            raise RuntimeError("this process already holds the keystore lock")
        if create:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not self.home.is_dir():
            raise self._missing()
        return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)

    def _held(self, fd: int) -> None:
        self._lock_fd = fd
        self._fresh = False

    def _release(self, fd: int) -> None:
        if self._lock_fd == fd:
            self._lock_fd = None
            self._fresh = False
        os.close(fd)  # closing the descriptor releases the flock

    def _missing(self) -> ClientError:
        return ClientError(
            "not_initialized",
            f"There is no keystore in {self.home}. Run `spokes init --server URL` "
            "or `spokes join CODE --server URL` first, or pass the right --home.",
        )

    @property
    def key(self) -> KeystoreKey | None:
        """The key that opened (or sealed) the keystore in this process, if any."""
        return self._key

    def read(self, secret: Secret) -> State:
        """Open the keystore; under the lock, this is what a later write may replace."""
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            raise self._missing() from None
        try:
            if self._kept is not None and self._kept[0] == blob and self._key_secret == secret:
                value = self._kept[2]  # the keystore as this process last read or wrote it
            else:
                plain = self._open(blob, secret)
                value = decode(plain)
                self._kept = (blob, plain, value)
            state = State.from_value(value)
        except (CryptoError, ValueError, KeyError, TypeError) as exc:
            raise ClientError(
                "damaged_keystore",
                f"The keystore in {self.home} opened but its contents do not verify ({exc}). "
                "Restore it from a backup.",
            ) from None
        if self.locked:
            self._fresh = True
        return state

    def _open(self, blob: bytes, secret: Secret) -> bytes:
        if self._key is not None and self._key_secret == secret:
            try:
                return open_with_key(self._key, blob)
            except KeystoreError:
                pass  # re-created under another salt: derive its key again
        try:
            key = secret if isinstance(secret, KeystoreKey) else derive_key(secret, blob)
            plain = open_with_key(key, blob)
        except KeystoreError:
            if isinstance(secret, KeystoreKey):
                told = "The key this home was unlocked with (`spokes unlock`)"
            else:
                told = "The passphrase"
            raise ClientError(
                "wrong_passphrase",
                f"{told} does not open the keystore in {self.home}. "
                "Type it again (or set SPOKES_PASSPHRASE), and check --home.",
            ) from None
        self._key, self._key_secret = key, secret
        return plain

    def write(self, state: State, secret: Secret, params: KdfParams | None = None) -> None:
        """Seal `state` and replace the file atomically (tmp + fsync + rename).

        Only under the lock, and only over a keystore read (or written) under
        this same hold: otherwise another process's changes would be lost and
        a spent message counter could be used again. `params` makes a new salt
        and key from the passphrase (a new keystore); without it the kept key
        seals again under the same salt and cost, with a fresh nonce. A write
        of exactly what the file holds (as read or written under this hold)
        is skipped.
        """
        if not self.locked:
            raise RuntimeError("the keystore is written only under its lock")
        if not self._fresh and self.path.exists():
            raise RuntimeError("refusing a stale write: read the keystore under this lock first")
        if params is not None:
            if not isinstance(secret, str):
                raise ValueError("a new keystore is sealed under a passphrase, not a key")
            self._key, self._key_secret = new_key(secret, params), secret
        elif self._key is None or self._key_secret != secret:
            raise ValueError("no KDF parameters: read the keystore or pass params")
        value = state.to_value()
        plain = encode(value)
        if self._kept is not None and self._kept[1] == plain and self._fresh and params is None:
            return  # the file holds this already (read or written under this hold)
        blob = seal_with_key(self._key, plain)
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.home / f".{KEYSTORE_FILE}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.home)
        self._fresh = True
        # What was written, as a read would decode it: a process that reads its
        # own last write again (the daemon, around every relay) skips opening and
        # decoding it. from_value copies what it keeps, so the value stays as written.
        self._kept = (blob, plain, value)


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
