"""End to end: mail notices as a person and an operator meet them.

The operator starts `spokes-server serve` with a mail server (aiosmtpd on
loopback) and a mail key file, or without them; members run `spokes notify
set` and `spokes notify clear`.
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg
from aiosmtpd.controller import Controller

from server.mail import TEXTS, NoticeKind
from tests.conftest import SpawnServer, run_sync
from tests.e2e.test_member_flow import found, invite, run
from tests.server.test_mail import FROM, Inbox, free_port

ADDRESS = "ann@example.org"


async def _mail_rows(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM mail_addresses")
        return count
    finally:
        await conn.close()


def test_a_member_opts_in_and_out_with_the_spokes_command(
    spawn_server: SpawnServer, database_url: str, tmp_path: Path
) -> None:
    inbox, port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        key_file = tmp_path / "mail.key"
        key_file.write_text(bytes(range(32)).hex() + "\n")
        key_file.chmod(0o600)
        server = spawn_server(
            "--database-url",
            database_url,
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(port),
            "--smtp-from",
            FROM,
            "--mail-key-file",
            str(key_file),
        )
        assert "mail notices are off" not in server.stderr()
        founder = found(tmp_path, server.url)
        refused = run(founder, "notify", "set", "ann at example.org", expect="invalid_address")
        assert "name@example.org" in refused["error"]["message"]
        assert run_sync(_mail_rows(database_url)) == 0
        assert run(founder, "notify", "set", ADDRESS) == {"status": "on"}
        assert run_sync(_mail_rows(database_url)) == 1

        run(tmp_path / "b", "join", invite(founder), "--server", server.url)
        deadline = time.monotonic() + 10
        while not inbox.snapshot():
            assert time.monotonic() < deadline, "no notice arrived"
            time.sleep(0.05)
        (mail,) = inbox.snapshot()
        assert mail.to == [ADDRESS]
        assert mail.subject == TEXTS[NoticeKind.INVITE_REDEEMED][0]

        assert run(founder, "notify", "clear") == {"status": "off"}
        assert run_sync(_mail_rows(database_url)) == 0
        assert ADDRESS not in server.stderr()
    finally:
        smtp.stop()


def test_a_server_without_a_mail_server_says_mail_is_off_and_refuses_opt_in(
    spawn_server: SpawnServer, database_url: str, tmp_path: Path
) -> None:
    server = spawn_server("--database-url", database_url)
    assert "mail notices are off: no mail server" in server.stderr()
    founder = found(tmp_path, server.url)
    refused = run(founder, "notify", "set", ADDRESS, expect="mail_off")
    assert "nothing was stored" in refused["error"]["message"]
