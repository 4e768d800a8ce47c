"""Tests of client.state: the sealed keystore file in the home folder."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from client.errors import ClientError
from client.state import InviteRecord, Session, State, StateFile
from crypto.chains import make_admission
from crypto.encoding import decode, encode
from crypto.keys import IdentityKey
from crypto.keystore import KdfParams
from crypto.network import Policy, make_genesis, make_key_bundle
from crypto.roster import GroupRules, make_group
from crypto.sealing import KemPrivateKey, KemSuite

FAST = KdfParams(time_cost=1, memory_kib=8, parallelism=1)


def _full_state() -> State:
    identity = IdentityKey.generate()
    founder = IdentityKey.generate()
    genesis = make_genesis(founder, Policy(), 1000)
    network = genesis.network_id
    cell = make_group(
        founder,
        network,
        1000,
        [
            make_key_bundle(
                founder,
                network,
                KemSuite.X25519.value,
                KemPrivateKey.generate(KemSuite.X25519).public_key().public_bytes(),
                1000,
                9000,
            )
        ],
        rules=GroupRules.of(genesis),
    )
    kem = KemPrivateKey.generate(KemSuite.X25519)
    bundle = make_key_bundle(
        identity, network, kem.suite.value, kem.public_key().public_bytes(), 1000, 9000
    )
    admission = make_admission(
        founder, network, identity.public_key(), cell.group_id, b"l" * 16, b"j" * 32, 1100
    )
    return State(
        identity=identity,
        kem=kem,
        server="http://127.0.0.1:1",
        genesis=genesis,
        network_name="Riverside",
        chain=(admission,),
        key_bundle=bundle,
        cell_id=cell.group_id,
        session=Session("token", 5000),
        invites={"abc": InviteRecord("for Sam", 7000)},
    )


def test_state_round_trips_through_the_sealed_file(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "home")
    state = _full_state()
    with store.lock(create=True):
        store.write(state, "pass phrase", FAST)
    loaded = StateFile(tmp_path / "home").read("pass phrase")
    assert loaded.to_value() == state.to_value()
    assert loaded.member_id == state.member_id
    assert loaded.network_id == state.network_id


def test_keystore_file_is_private(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "home")
    with store.lock(create=True):
        store.write(_full_state(), "pw", FAST)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.lock_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.home).st_mode) == 0o700


def test_wrong_passphrase_is_refused_with_its_own_code(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    with store.lock():
        store.write(_full_state(), "right", FAST)
    with pytest.raises(ClientError) as caught:
        StateFile(tmp_path).read("wrong")
    assert caught.value.code == "wrong_passphrase"


def test_missing_keystore_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ClientError) as caught:
        StateFile(tmp_path).read("pw")
    assert caught.value.code == "not_initialized"
    assert "spokes init" in caught.value.message


def test_rewrite_replaces_the_file_whole_and_leaves_no_temporaries(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    state = _full_state()
    with store.lock():
        store.write(state, "pw", FAST)
        store.write(replace(state, network_name="Hillside"), "pw")  # keeps the read/write params
    assert sorted(os.listdir(tmp_path)) == ["keystore", "lock"]
    assert StateFile(tmp_path).read("pw").network_name == "Hillside"


def test_failed_write_keeps_the_old_keystore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateFile(tmp_path)
    state = _full_state()

    def broken_fsync(fd: int) -> None:
        raise OSError("disk gone")

    with store.lock():
        store.write(state, "pw", FAST)
        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(OSError):
            store.write(replace(state, network_name="Hillside"), "pw")
        monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["keystore", "lock"]
    assert StateFile(tmp_path).read("pw").network_name == "Riverside"


def test_damaged_keystore_is_refused(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    with store.lock():
        store.write(_full_state(), "pw", FAST)
    blob = bytearray(store.path.read_bytes())
    blob[-1] ^= 1
    store.path.write_bytes(bytes(blob))
    with pytest.raises(ClientError) as caught:
        store.read("pw")
    assert caught.value.code == "wrong_passphrase"


def test_keystore_without_a_network_round_trips(tmp_path: Path) -> None:
    state = State(IdentityKey.generate(), KemPrivateKey.generate(), "http://x")
    store = StateFile(tmp_path)
    with store.lock():
        store.write(state, "pw", FAST)
    loaded = StateFile(tmp_path).read("pw")
    assert loaded.genesis is None and loaded.chain == () and loaded.server == "http://x"


# One writer at a time (DESIGN §7).

ROOT = Path(__file__).resolve().parents[2]

# A second process: takes the home's lock, says when it has it, writes the
# keystore over what it read, and lets go.
CHILD = """
import sys, time
from dataclasses import replace
from pathlib import Path
from client.state import StateFile
store = StateFile(Path(sys.argv[1]))
with store.lock():
    print(time.monotonic(), flush=True)
    state = store.read("pw")
    store.write(replace(state, network_name="written by the child"), "pw")
"""


def _child(home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_the_lock_makes_a_second_process_wait_until_the_first_lets_go(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    with store.lock():
        store.write(_full_state(), "pw", FAST)
        child = _child(tmp_path)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=1.5)  # it can't get in while this process holds the lock
        state = store.read("pw")
        assert state.network_name == "Riverside"
        store.write(replace(state, network_name="written by the parent"), "pw")
        released = time.monotonic()
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    assert float(out.strip()) >= released
    assert StateFile(tmp_path).read("pw").network_name == "written by the child"


def test_the_async_lock_waits_for_another_process_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    store = StateFile(tmp_path)
    with store.lock():
        store.write(_full_state(), "pw", FAST)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom client.state import StateFile\n"
            "with StateFile(Path(sys.argv[1])).lock():\n"
            "    print('held', flush=True)\n    time.sleep(1.0)\n",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

    async def take() -> tuple[int, float]:
        ticks = 0
        start = time.monotonic()
        got = asyncio.Event()

        async def tick() -> None:
            nonlocal ticks
            while not got.is_set():
                ticks += 1
                await asyncio.sleep(0.05)

        ticker = asyncio.create_task(tick())
        async with store.lock_async():
            got.set()
            waited = time.monotonic() - start
        await ticker
        return ticks, waited

    ticks, waited = asyncio.run(take())
    assert holder.wait(timeout=30) == 0
    assert waited >= 0.5, "the lock was taken while another process held it"
    assert ticks >= 5, "the event loop stood still while the lock was awaited"


def test_a_write_without_the_lock_is_refused(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    with pytest.raises(RuntimeError):
        store.write(_full_state(), "pw", FAST)
    assert not store.exists()


def test_a_stale_write_is_refused(tmp_path: Path) -> None:
    """State read under an earlier hold of the lock may never be written back."""
    mine, theirs = StateFile(tmp_path), StateFile(tmp_path)
    with mine.lock():
        mine.write(_full_state(), "pw", FAST)
    with mine.lock():
        stale = mine.read("pw")
    with theirs.lock():
        theirs.write(replace(theirs.read("pw"), network_name="Hillside"), "pw")
    with mine.lock():
        with pytest.raises(RuntimeError):
            mine.write(stale, "pw")
        fresh = mine.read("pw")
        assert fresh.network_name == "Hillside"
        mine.write(replace(fresh, network_name="Lakeside"), "pw")
    assert StateFile(tmp_path).read("pw").network_name == "Lakeside"


def test_the_lock_is_not_taken_twice_by_one_process(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    with store.lock(), pytest.raises(RuntimeError), store.lock():
        pass


def test_a_missing_home_is_not_created_by_an_ordinary_command(tmp_path: Path) -> None:
    with pytest.raises(ClientError) as caught, StateFile(tmp_path / "nowhere").lock():
        pass
    assert caught.value.code == "not_initialized"
    assert not (tmp_path / "nowhere").exists()


def test_a_rewrite_keeps_salt_and_cost_under_a_fresh_nonce(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    state = _full_state()
    with store.lock():
        store.write(state, "pw", FAST)
        first = store.path.read_bytes()
        changed = replace(state, profile_version=state.profile_version + 1)
        store.write(changed, "pw")
        second = store.path.read_bytes()
    assert first[:33] == second[:33]  # magic, version, cost and salt
    assert first[33:45] != second[33:45]  # the nonce
    assert StateFile(tmp_path).read("pw").to_value() == changed.to_value()


def test_writing_what_the_file_holds_writes_nothing_and_a_read_of_it_is_the_same(
    tmp_path: Path,
) -> None:
    store = StateFile(tmp_path)
    state = _full_state()
    with store.lock():
        store.write(state, "pw", FAST)
        written = store.path.stat()
        store.write(store.read("pw"), "pw")  # the daemon's round: read, nothing new, save
        assert store.path.stat().st_ino == written.st_ino  # not replaced
        kept = store.read("pw")  # from what this process wrote, not decoded again
    assert kept.to_value() == StateFile(tmp_path).read("pw").to_value() == state.to_value()
    # Another process's write is read afresh, not taken from what this one kept.
    other = StateFile(tmp_path)
    with other.lock():
        other.read("pw")
        other.write(replace(state, profile_version=99), "pw")
    with store.lock():
        assert store.read("pw").profile_version == 99


def test_a_keystore_made_again_under_a_new_salt_still_opens(tmp_path: Path) -> None:
    mine, theirs = StateFile(tmp_path), StateFile(tmp_path)
    with mine.lock():
        mine.write(_full_state(), "pw", FAST)
    with theirs.lock():
        theirs.read("pw")
        theirs.write(_full_state(), "pw", KdfParams(time_cost=2, memory_kib=8, parallelism=1))
    with mine.lock():
        assert mine.read("pw").network_name == "Riverside"
        with pytest.raises(ClientError) as caught:
            mine.read("not the passphrase")
    assert caught.value.code == "wrong_passphrase"


# The revocation chain this client verified (PROTOCOL §7) is kept in the keystore.


def test_known_revocations_survive_the_keystore() -> None:
    state = State(IdentityKey.generate(), KemPrivateKey.generate(), "http://x")
    assert State.from_value(decode(encode(state.to_value()))).revocations == ()
    known = replace(state, revocations=(b"\x01" * 32, b"\x02" * 32))
    assert State.from_value(decode(encode(known.to_value()))).revocations == known.revocations


def test_a_malformed_known_revocation_is_refused() -> None:
    state = State(IdentityKey.generate(), KemPrivateKey.generate(), "http://x")
    value = state.to_value()
    value["revocations"] = [b"\x01" * 31]
    with pytest.raises(ValueError, match="32 bytes"):
        State.from_value(decode(encode(value)))
