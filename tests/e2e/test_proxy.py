"""End to end: Spokes behind the proxy configuration in deploy/, as an operator runs it.

Debian's nginx (scripts/test.sh installs it where it is missing) runs
deploy/nginx/spokes.conf and deploy/nginx/upstream.conf on loopback, with only
their ports, file paths and upstream addresses changed, in front of two
`spokes-server serve` instances on one database. Its certificate is signed by
a CA made here, which the members' `spokes` commands trust through
SSL_CERT_FILE: verification stays on.

Members build their cell through the proxy over HTTPS; two of them watch, the
proxy's least_conn puts their sockets on different instances (each
instance's own metrics say so), and every message the founder sends reaches
both, so each one crossed from one instance to the other at least once. Then,
while the founder sends flat out, the instance holding one watcher's socket
is killed with SIGKILL: that watcher connects again through the proxy, lands
on the survivor and resumes from its cursor. Each message carries a
sequence marker; both watchers show every marker once, in order.
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import ServerProcess, SpawnServer
from tests.e2e.test_cells import cell_of_three
from tests.e2e.test_member_flow import COMMAND, ENV, run
from tests.e2e.test_watch import Watcher

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
START_S = 15.0  # the most nginx may take to accept connections
LIVE = [f"m{i:02d}" for i in range(1, 4)]  # each one waited for before the next
STREAM = [f"m{i:02d}" for i in range(4, 16)]  # sent flat out; the kill comes in between
KILL_AFTER = "m06"  # both watchers have shown it: then an instance dies
SEND_TRIES = 3

pytestmark = pytest.mark.skipif(
    NGINX is None,
    reason="nginx is not installed and could not be (scripts/test.sh runs apt-get install "
    "nginx): the proxy configuration in deploy/ went untested",
)

# The test's own nginx.conf: only what Debian's /etc/nginx/nginx.conf gives a
# site (a user, the pid file, logs and temporary folders), all in the test's
# folder, then the two files from deploy/nginx in the order compose reads them.
MAIN_CONF = """\
user {user} {group};
worker_processes 2;
pid {folder}/nginx.pid;
error_log {folder}/error.log notice;
events {{
    worker_connections 512;
}}
http {{
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/spokes.conf;
    include {folder}/upstream.conf;
}}
"""


@dataclass
class Instance:
    """One `spokes-server serve` behind the proxy, with its metrics port."""

    server: ServerProcess
    metrics_port: int

    @property
    def address(self) -> str:
        return self.server.url.removeprefix("http://")

    def open_sockets(self) -> int:
        """What the instance's own metrics say: WebSockets open on it now."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            if line.startswith("spokes_open_sockets "):
                return int(float(line.split()[1]))
        raise AssertionError("no spokes_open_sockets in the metrics")


@dataclass
class Proxy:
    """nginx in front of the instances: the members' server address is `url`."""

    url: str
    https_port: int
    http_port: int
    instances: list[Instance]
    folder: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_certificate(folder: Path) -> Path:
    """A CA and a certificate it signed for 127.0.0.1, where spokes.conf expects them.

    Returns the CA's file, for SSL_CERT_FILE.
    """
    folder.mkdir()
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Spokes test CA")])
    usage = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(**{**usage, "key_cert_sign": True, "crl_sign": True}), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**{**usage, "digital_signature": True}), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "fullchain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    private = folder / "privkey.pem"
    private.touch(mode=0o600)
    private.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    return folder / "ca.pem"


def templated(name: str, changes: dict[str, str]) -> str:
    """deploy/nginx/NAME with exactly these strings replaced (each must be there)."""
    text = (DEPLOY / "nginx" / name).read_text()
    for old, new in changes.items():
        assert old in text, f"deploy/nginx/{name} no longer has {old!r}: update this test"
        text = text.replace(old, new)
    return text


def write_proxy_conf(
    folder: Path, tls: Path, https_port: int, http_port: int, upstreams: list[str]
) -> Path:
    """The test's nginx.conf, including deploy's two files with ports, paths and
    upstream addresses changed and nothing else."""
    folder.mkdir()
    (folder / "spokes.conf").write_text(
        templated(
            "spokes.conf",
            {
                "listen 443 ssl default_server;": f"listen 127.0.0.1:{https_port} ssl default_server;",
                "listen 80 default_server;": f"listen 127.0.0.1:{http_port} default_server;",
                "/etc/spokes/tls/": f"{tls}/",
                "/var/log/nginx/": f"{folder}/",
                "/var/www/acme": f"{folder}/acme",
            },
        )
    )
    (folder / "upstream.conf").write_text(
        templated(
            "upstream.conf",
            {"127.0.0.1:8081": upstreams[0], "127.0.0.1:8082": upstreams[1]},
        )
    )
    conf = folder / "nginx.conf"
    conf.write_text(
        MAIN_CONF.format(
            user=pwd.getpwuid(os.geteuid()).pw_name,
            group=grp.getgrgid(os.getegid()).gr_name,
            folder=folder,
        )
    )
    return conf


def wait_for(check: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    """Poll `check` every 0.1 s, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.1)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def proxy(
    spawn_server: SpawnServer,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Proxy]:
    """nginx with deploy's configuration before two instances on one database."""
    assert NGINX is not None
    shared = {"SPOKES_SERVER_SECRET": os.urandom(32).hex(), "SPOKES_TRUST_FORWARDED_FOR": "1"}
    instances = []
    for _ in range(2):
        metrics_port = free_port()
        server = spawn_server(
            "--database-url", database_url, "--metrics-port", str(metrics_port), env=shared
        )
        instances.append(Instance(server, metrics_port))
    ca = make_certificate(tmp_path / "tls")
    https_port, http_port = free_port(), free_port()
    folder = tmp_path / "nginx"
    conf = write_proxy_conf(
        folder, tmp_path / "tls", https_port, http_port, [i.address for i in instances]
    )
    command = [NGINX, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(conf)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"nginx -t refused deploy's configuration:\n{checked.stderr}"
    # The members' commands trust the test's CA, and only through the standard
    # variable that OpenSSL's default verify paths read (client/transport.py).
    monkeypatch.setitem(ENV, "SSL_CERT_FILE", str(ca))
    running = Proxy(f"https://127.0.0.1:{https_port}", https_port, http_port, instances, folder)
    running.process = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: accepts(https_port), "nginx accepts connections", START_S)
        yield running
    finally:
        running.process.send_signal(signal.SIGTERM)  # nginx's fast shutdown
        try:
            running.process.wait(10)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()


class Sender(threading.Thread):
    """`spokes send cell TEXT` for each text in turn, as fast as the command goes.

    A send that failed before sealing (the proxy answered 503 for a request
    the killed instance had taken) is run again; one that ends
    `send_unconfirmed` is kept in the home's outbox and posted first by the
    next send, so it is not sent again. At most SEND_TRIES tries each.
    """

    def __init__(self, home: Path, texts: list[str]) -> None:
        super().__init__(daemon=True)
        self.home = home
        self.texts = texts
        self.failures: list[tuple[str, str]] = []
        self.error: str | None = None

    def run(self) -> None:
        for index, text in enumerate(self.texts):
            for _ in range(SEND_TRIES):
                code = self.send(text)
                if code is None:
                    break
                self.failures.append((text, code))
                if code == "send_unconfirmed":
                    if index == len(self.texts) - 1:
                        self.error = f"the last message {text} is still unconfirmed"
                        return
                    break
            else:
                self.error = f"{text} failed {SEND_TRIES} times: {self.failures}"
                return

    def send(self, text: str) -> str | None:
        """None when sent, else the error's code."""
        done = subprocess.run(
            [*COMMAND, "send", "cell", text, "--home", str(self.home), "--json"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode == 0:
            return None
        try:
            code: str = json.loads(done.stdout.splitlines()[-1])["error"]["code"]
        except (IndexError, ValueError, KeyError, TypeError):
            code = f"exit {done.returncode}: {done.stderr[-300:]}"
        return code


def markers(shown: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in shown]


def test_plain_http_is_redirected_and_no_instance_up_is_a_json_503(proxy: Proxy) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=10)
    try:
        connection.request("GET", "/v1/openapi.json")
        answer = connection.getresponse()
        assert answer.status == 301
        assert answer.getheader("Location", "").startswith("https://127.0.0.1")
    finally:
        connection.close()

    for instance in proxy.instances:
        instance.server.process.kill()
        instance.server.process.wait()
    # nginx's own error, in the server's shape: clients take it as "try again".
    context = ssl.create_default_context(cafile=ENV["SSL_CERT_FILE"])
    secure = http.client.HTTPSConnection("127.0.0.1", proxy.https_port, timeout=10, context=context)
    try:
        secure.request("GET", "/healthz")
        answer = secure.getresponse()
        body = json.loads(answer.read())
        assert answer.status == 503 and answer.getheader("Retry-After") == "2"
        assert body["error"]["code"] == "unavailable"
    finally:
        secure.close()


def test_members_on_two_instances_talk_live_and_survive_one_killed_mid_stream(
    proxy: Proxy, tmp_path: Path
) -> None:
    started = time.monotonic()
    founder, b, c = cell_of_three(tmp_path, proxy.url)  # every request through the proxy
    first, second = proxy.instances
    count = str(len(LIVE) + len(STREAM))

    # Two watches, one socket each: least_conn sends the second to the other instance.
    watch_b = Watcher(b, "--json", "--count", count, "--timeout", "90")
    wait_for(lambda: first.open_sockets() + second.open_sockets() == 1, "b's socket is open")
    b_side, other = (first, second) if first.open_sockets() == 1 else (second, first)
    watch_c = Watcher(c, "--json", "--count", count, "--timeout", "90")
    wait_for(lambda: other.open_sockets() == 1, "c's socket is open on the other instance")
    assert b_side.open_sockets() == 1

    # Live: each message reaches both instances' sockets before the next is sent.
    shown_b: list[dict[str, Any]] = []
    shown_c: list[dict[str, Any]] = []
    for text in LIVE:
        run(founder, "send", "cell", text)
        shown_b += watch_b.messages(1)
        shown_c += watch_c.messages(1)
        assert markers(shown_b)[-1] == markers(shown_c)[-1] == text

    # Flat out; b's instance is killed once both have shown KILL_AFTER.
    sender = Sender(founder, STREAM)
    sender.start()
    while KILL_AFTER not in markers(shown_b):
        shown_b += watch_b.messages(1)
    while KILL_AFTER not in markers(shown_c):
        shown_c += watch_c.messages(1)
    assert sender.is_alive(), "the stream ended before the kill: send more messages"
    b_side.server.process.kill()  # SIGKILL: no goodbye to the proxy or the sockets
    b_side.server.process.wait()
    killed_at = time.monotonic()

    watch_b.said("Lost the server")
    back = watch_b.said("Back after")
    wait_for(lambda: other.open_sockets() == 2, "b's socket is on the surviving instance")
    shown_b += watch_b.messages(int(count) - len(shown_b))
    shown_c += watch_c.messages(int(count) - len(shown_c))
    sender.join(60)
    assert not sender.is_alive() and sender.error is None, (sender.error, proxy.log())

    for name, watch, shown, reconnects in (
        ("b", watch_b, shown_b, 1),
        ("c", watch_c, shown_c, 0),
    ):
        (end,) = watch.end()
        assert watch.process.returncode == 0
        assert json.loads(end) == {
            "received": int(count),
            "reason": "count",
            "reconnects": reconnects,
        }, name
        assert markers(shown) == LIVE + STREAM, f"{name} lost or repeated a message"
        cursors = [m["cursor"] for m in shown]
        assert cursors == sorted(set(cursors)), f"{name} was shown a message twice"
    print(
        f"through nginx: b back on the other instance {back - killed_at:.2f} s after the "
        f"SIGKILL; sends that failed and were retried: {sender.failures}; "
        f"whole test {time.monotonic() - started:.1f} s"
    )
