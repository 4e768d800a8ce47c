"""Tests of client.state: the sealed keystore file in the home folder."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from client.errors import ClientError
from client.state import InviteRecord, Session, State, StateFile
from crypto.chains import make_admission
from crypto.keys import IdentityKey
from crypto.keystore import KdfParams
from crypto.network import Policy, make_genesis, make_key_bundle
from crypto.roster import make_group
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
                founder, network, "X25519/HKDF_SHA256/AES_256_GCM", bytes(32), 1000, 9000
            )
        ],
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
    store.write(state, "pass phrase", FAST)
    loaded = StateFile(tmp_path / "home").read("pass phrase")
    assert loaded.to_value() == state.to_value()
    assert loaded.member_id == state.member_id
    assert loaded.network_id == state.network_id


def test_keystore_file_is_private(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "home")
    store.write(_full_state(), "pw", FAST)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.home).st_mode) == 0o700


def test_wrong_passphrase_is_refused_with_its_own_code(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
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
    store.write(state, "pw", FAST)
    store.write(replace(state, network_name="Hillside"), "pw")  # keeps the read/write params
    assert os.listdir(tmp_path) == ["keystore"]
    assert StateFile(tmp_path).read("pw").network_name == "Hillside"


def test_failed_write_keeps_the_old_keystore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateFile(tmp_path)
    state = _full_state()
    store.write(state, "pw", FAST)

    def broken_fsync(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        store.write(replace(state, network_name="Hillside"), "pw")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["keystore"]
    assert StateFile(tmp_path).read("pw").network_name == "Riverside"


def test_damaged_keystore_is_refused(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    store.write(_full_state(), "pw", FAST)
    blob = bytearray(store.path.read_bytes())
    blob[-1] ^= 1
    store.path.write_bytes(bytes(blob))
    with pytest.raises(ClientError) as caught:
        store.read("pw")
    assert caught.value.code == "wrong_passphrase"


def test_keystore_without_a_network_round_trips(tmp_path: Path) -> None:
    state = State(IdentityKey.generate(), KemPrivateKey.generate(), "http://x")
    StateFile(tmp_path).write(state, "pw", FAST)
    loaded = StateFile(tmp_path).read("pw")
    assert loaded.genesis is None and loaded.chain == () and loaded.server == "http://x"
