"""How long each everyday `spokes` command takes, as a whole process, while unlocked.

    .venv/bin/python bench/cli.py [--runs 15] [--locked] [--cheap-kdf]

Starts `spokes-server serve` on its own embedded PostgreSQL (loopback, a
temporary folder removed afterwards), then drives the `spokes` command as a
person would, each member in their own home folder with a keystore sealed at
the cost `init` calibrates on this machine:

1. A founder founds a network (vouches 2, cells of 2 to 12) and admits Alex,
   Sam and Kim (each with the vouches the rules ask for); everyone sets a
   profile. Then 8 newcomers join (the cell is full: 4 members, 8 waiting)
   and the founder signs their certificates: they stay pending, since not
   every cellmate vouched and the vetting window is open. Alex opens `--runs` split motions (moving Sam and
   Kim) for Sam to sign.
2. Every member runs `spokes unlock` (unless `--locked`, which measures with
   the passphrase given in SPOKES_PASSPHRASE, one Argon2id derivation each).
3. Each command is run `--runs` times, each run a new `spokes` process, timed
   from start to exit: `status`, `pending`, `vouch` (Alex, then Kim, each for
   the next newcomer), `cells`, `members cell`, `send cell` (Sam), `read cell` (Alex,
   one new message each time), `motions`, `sign` (Sam, the next motion), and
   `whoami` (no server round trip: the floor of a command).

The commands run with PYTHONDONTWRITEBYTECODE unset, as on a member's
machine, so Python keeps spokes' compiled modules between runs.

It prints one row per command: p50, p95 and max in milliseconds, and the
target (0.5 s at p50). Not part of the test suite; about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.messages import machine, percentile, running_server  # noqa: E402

SPOKES = str(Path(sys.executable).parent / "spokes")
PASSPHRASE = "lantern orchard velvet quarry mosaic thimble"  # noqa: S105 - a throwaway bench keystore
TARGET_MS = 500.0
# Newcomers waiting in the cell while the commands run: a full cell of 12
# (the default cell_max) holds its 4 members and 8 of them.
PENDING = 8


class Person:
    """One member: a home folder and the `spokes` command run in it."""

    def __init__(self, root: Path, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.home = root / name
        self.env = env
        self.id = ""

    def run(self, *args: str) -> dict[str, Any]:
        process = subprocess.run(  # noqa: S603
            [SPOKES, *args, "--home", str(self.home), "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = process.stdout.splitlines()
        if process.returncode != 0 or len(lines) != 1:
            raise SystemExit(
                f"`spokes {' '.join(args)}` ({self.name}) failed: {process.stdout}{process.stderr}"
            )
        result: dict[str, Any] = json.loads(lines[0])
        return result


def admit(founder: Person, newcomer: Person, url: str, *vouchers: Person) -> None:
    code = founder.run("invite", "create", "--note", f"for {newcomer.name}")["code"]
    joined = newcomer.run("join", code, "--server", url)
    newcomer.id = joined["member_id"]
    founder.run("admit", newcomer.id, "--safety-number", joined["safety_number"])
    for voucher in vouchers:
        voucher.run("vouch", newcomer.id)


def build(root: Path, url: str, runs: int, env: dict[str, str]) -> dict[str, Any]:
    founder, alex, sam, kim = (Person(root, n, env) for n in ("founder", "alex", "sam", "kim"))
    founder.id = founder.run("init", "--server", url)["member_id"]
    founder.run(
        "network", "create", "--name", "Bench", "--vouches", "2",
        "--cell-min", "2", "--cell-max", "12", "--invite-quota", str(PENDING + 5),
    )  # fmt: skip
    admit(founder, alex, url)
    admit(founder, sam, url, alex)
    admit(founder, kim, url, alex, sam)
    for person in (founder, alex, sam, kim):
        person.run("profile", "set", "--name", person.name.title())
    pending = []
    for i in range(PENDING):
        newcomer = Person(root, f"newcomer{i}", env)
        code = founder.run("invite", "create", "--note", f"newcomer {i}")["code"]
        joined = newcomer.run("join", code, "--server", url)
        founder.run("admit", joined["member_id"], "--safety-number", joined["safety_number"])
        pending.append(joined["member_id"])
    motions = [
        alex.run("cell", "split", "cell", "--member", sam.id, "--member", kim.id)["motion_id"]
        for _ in range(runs)
    ]
    # Alex and Kim take turns vouching for the newcomers: each vouch a new one,
    # and none completes an admission (Sam never vouches; the window is open).
    vouches = [(voucher, member) for voucher in (alex, kim) for member in pending][:runs]
    return {"founder": founder, "alex": alex, "sam": sam, "kim": kim,
            "vouches": vouches, "motions": motions}  # fmt: skip


def timed(person: Person, *args: str) -> float:
    start = time.perf_counter()
    person.run(*args)
    return (time.perf_counter() - start) * 1000


def vouch(voucher: Person, member: str) -> float:
    return timed(voucher, "vouch", member)


def measure(world: dict[str, Any], runs: int) -> list[tuple[str, list[float]]]:
    alex, sam = world["alex"], world["sam"]
    vouches, motions = iter(world["vouches"]), iter(world["motions"])
    plans: list[tuple[str, Callable[[], float]]] = [
        ("whoami", lambda: timed(sam, "whoami")),
        ("status", lambda: timed(sam, "status")),
        ("pending", lambda: timed(sam, "pending")),
        ("vouch", lambda: vouch(*next(vouches))),
        ("cells", lambda: timed(sam, "cells")),
        ("members cell", lambda: timed(sam, "members", "cell")),
        ("send cell", lambda: timed(sam, "send", "cell", "see you at eight")),
        ("read cell", lambda: timed(alex, "read", "cell")),
        ("motions", lambda: timed(sam, "motions")),
        ("sign", lambda: timed(sam, "sign", next(motions))),
    ]
    results: list[tuple[str, list[float]]] = [(name, []) for name, _ in plans]
    for _ in range(runs):  # interleaved, so every command sees the same state of things
        for (_, times), (_, plan) in zip(results, plans, strict=True):
            times.append(plan())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument(
        "--locked",
        action="store_true",
        help="measure with the passphrase (one derivation per command) instead of unlocked",
    )
    parser.add_argument(
        "--cheap-kdf",
        action="store_true",
        help="seal the keystores with the test-only, trivially cheap passphrase hash "
        "(with --locked: what a command costs besides the derivation)",
    )
    args = parser.parse_args()
    env = {**os.environ, "SPOKES_PASSPHRASE": PASSPHRASE}
    env.pop("SPOKES_INSECURE_TEST_KDF", None)
    # As on a member's machine: Python keeps the compiled modules (some test
    # machines set this, and then every command compiles spokes anew).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.cheap_kdf:
        env["SPOKES_INSECURE_TEST_KDF"] = "1"
    with running_server() as server, tempfile.TemporaryDirectory(prefix="spokes-cli-") as tmp:
        started = time.perf_counter()
        world = build(Path(tmp), server.url, args.runs, env)
        print(f"set-up: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        people = [world[n] for n in ("founder", "alex", "sam", "kim")]
        if not args.locked:
            for person in people:
                person.run("unlock", "--for", "30m")
                person.env = {k: v for k, v in env.items() if k != "SPOKES_PASSPHRASE"}
        try:
            results = measure(world, args.runs)
        finally:
            if not args.locked:
                for person in people:
                    person.run("lock")
    mode = "with the passphrase" if args.locked else "unlocked"
    print(f"`spokes` commands, each a whole process, {mode}, {args.runs} runs; {machine()}")
    print("| command | p50 ms | p95 ms | max ms | p50 under 500 ms |")
    print("|---|---|---|---|---|")
    for name, times in results:
        p50 = percentile(times, 50)
        print(
            f"| {name} | {p50:.0f} | {percentile(times, 95):.0f} | {max(times):.0f} "
            f"| {'yes' if p50 < TARGET_MS else 'NO'} |"
        )


if __name__ == "__main__":
    main()
