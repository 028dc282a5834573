"""What an operator relies on, seen from outside a real `gateway serve` process: users and ACLs, TLS, limits,
hostile input, slow subscribers, shutdown and configuration errors."""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.util
import ipaddress
import queue
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, Client, Gateway, mosquitto_env, wait_until
from tests.rawmqtt import (
    CONNACK,
    DISCONNECT,
    SUBACK,
    RawClient,
    RawFactory,
    connect_packet,
    mqtt_str,
    packet,
    publish_packet,
    subscribe_packet,
)

GatewayFactory = Callable[..., Gateway]

# ---------------------------------------------------------------------------------------------------------------
# Helpers; raw clients (the `raw` fixture, tests/rawmqtt.py) send exact bytes for what paho hides or refuses to send.


def gateway_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway", *args]
    return subprocess.run(command, check=False, cwd=REPO, input=stdin, capture_output=True, text=True, timeout=60)


def mosquitto_pub(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=20, env=mosquitto_env())


def log_lines_with(gateway: Gateway, *needles: str) -> list[str]:
    return [line for line in gateway.log().splitlines() if all(n in line for n in needles)]


def subscribe_many(client: Client, filters: list[tuple[str, int]]) -> list[int]:
    """One SUBSCRIBE with several filters; the SUBACK's codes as numbers."""
    _rc, mid = client.paho.subscribe(filters)
    while True:
        got_mid, codes = client.subacks.get(timeout=10)
        if got_mid == mid:
            return [code(c) for c in codes]


def ack_for(client: Client, mid: int) -> int:
    """The reason code of the PUBACK for `mid`."""
    while True:
        got_mid, rc, _props = client.acks.get(timeout=10)
        if got_mid == mid:
            return code(rc)


def code(reason: object) -> int:
    """A paho ReasonCode (or plain int) as a number."""
    value = getattr(reason, "value", reason)
    assert isinstance(value, int), reason
    return value


# ---------------------------------------------------------------------------------------------------------------
# Authentication: `gateway passwd` and allow_anonymous = false


def make_password_file(path: Path, users: dict[str, str]) -> Path:
    for user, password in users.items():
        result = gateway_cli("passwd", str(path), user, "--password-stdin", stdin=password + "\n")
        assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice / wonderland and bob / builder, made once: argon2 is slow on purpose. Tests must not change it."""
    return make_password_file(tmp_path_factory.mktemp("users") / "passwd", {"alice": "wonderland", "bob": "builder"})


def auth_config(password_file: Path, *, allow_anonymous: bool = False, extra: str = "") -> str:
    return f'[mqtt]\nallow_anonymous = {str(allow_anonymous).lower()}\npassword_file = "{password_file}"\n' + extra


def test_right_password_connects_with_paho_and_mosquitto_pub(
    gateway_factory: GatewayFactory, password_file: Path, clients: list[Client]
) -> None:
    gw = gateway_factory(auth_config(password_file))
    alice = Client(gw.mqtt_port, "alice-311", username="alice", password="wonderland", connect=False)
    clients.append(alice)
    _flags, rc, _props = alice.connect()
    assert code(rc) == 0
    alice5 = Client(gw.mqtt_port, "alice-5", v5=True, username="alice", password="wonderland", connect=False)
    clients.append(alice5)
    _flags, rc, _props = alice5.connect()
    assert code(rc) == 0
    assert [code(c) for c in alice.subscribe("auth/#", 1)] == [1]

    ok = mosquitto_pub(gw.mqtt_port, "-u", "bob", "-P", "builder", "-t", "auth/bob", "-m", "from bob", "-q", "1")
    assert ok.returncode == 0, ok.stderr
    message = alice.expect()
    assert (message.topic, message.payload) == ("auth/bob", b"from bob")

    wrong = mosquitto_pub(gw.mqtt_port, "-u", "bob", "-P", "wrong", "-t", "auth/bob", "-m", "forged", "-q", "1")
    assert wrong.returncode != 0
    alice.expect_none(0.3)


@pytest.mark.parametrize(
    ("version", "bad_password", "not_authorized"), [(4, 0x04, 0x05), (5, 0x86, 0x87)], ids=["mqtt311", "mqtt5"]
)
def test_wrong_password_and_anonymous_are_refused(
    gateway_factory: GatewayFactory,
    password_file: Path,
    raw: RawFactory,
    version: int,
    bad_password: int,
    not_authorized: int,
) -> None:
    gw = gateway_factory(auth_config(password_file))
    attempts = {
        "wrong password": ({"username": "alice", "password": "Wonderland"}, bad_password),
        "unknown user": ({"username": "mallory", "password": "wonderland"}, bad_password),
        "user without password": ({"username": "alice"}, bad_password),
        "anonymous": ({}, not_authorized),
        "right password": ({"username": "alice", "password": "wonderland"}, 0),
    }
    for what, (credentials, expected) in attempts.items():
        conn = raw(gw.mqtt_port, version=version)
        username, password = credentials.get("username"), credentials.get("password")
        got = conn.connect(f"c-{what.replace(' ', '-')}", username=username, password=password, check=False).code
        assert got == expected, f"{what}: CONNACK {got:#04x}, expected {expected:#04x}"
        if expected:
            assert conn.read_until_closed() == [], f"{what}: the refused connection must be closed"
            assert log_lines_with(gw, conn.peer, "refused"), f"{what}: no log line names {conn.peer}:\n{gw.log()}"


def test_passwd_delete_refuses_the_user_after_a_restart(
    gateway_factory: GatewayFactory, password_file: Path, tmp_path: Path, raw: RawFactory
) -> None:
    passwords = tmp_path / "passwd"
    shutil.copy(password_file, passwords)
    gw = gateway_factory(auth_config(passwords))
    for user, password in (("alice", "wonderland"), ("bob", "builder")):
        assert raw(gw.mqtt_port).connect(f"{user}-1", username=user, password=password).code == 0

    result = gateway_cli("passwd", str(passwords), "alice", "-D")
    assert result.returncode == 0, result.stderr
    assert "alice" not in passwords.read_text() and "bob:" in passwords.read_text()
    gw.restart()

    refused = raw(gw.mqtt_port).connect("alice-2", username="alice", password="wonderland", check=False)
    assert refused.code == 0x04
    still = raw(gw.mqtt_port).connect("bob-2", username="bob", password="builder")
    assert still.code == 0


# ---------------------------------------------------------------------------------------------------------------
# ACL file

ACL = """\
# anonymous clients
topic read x

user alice
topic readwrite sensors/alice/#
topic read devices/#

user bob
topic read sensors/#

# every client
pattern write devices/%c/#
"""


@pytest.fixture
def acl_gateway(gateway_factory: GatewayFactory, password_file: Path, tmp_path: Path) -> Gateway:
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return gateway_factory(auth_config(password_file, allow_anonymous=True, extra=f'acl_file = "{acl}"\n'))


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_acl_denied_subscription_gets_a_failure_code(acl_gateway: Gateway, clients: list[Client], v5: bool) -> None:
    failure = 0x87 if v5 else 0x80
    alice = Client(acl_gateway.mqtt_port, "alice", v5=v5, username="alice", password="wonderland")
    clients.append(alice)
    codes = subscribe_many(alice, [("sensors/alice/#", 1), ("sensors/bob/#", 1), ("devices/#", 0), ("#", 0)])
    assert codes == [1, failure, 0, failure]
    anonymous = Client(acl_gateway.mqtt_port, "anon", v5=v5)
    clients.append(anonymous)
    assert subscribe_many(anonymous, [("x", 1), ("y", 1)]) == [1, failure]


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_acl_denied_publish_is_not_delivered(acl_gateway: Gateway, clients: list[Client], v5: bool) -> None:
    bob = Client(acl_gateway.mqtt_port, "bob", username="bob", password="builder")
    clients.append(bob)
    assert [code(c) for c in bob.subscribe("sensors/#", 1)] == [1]
    alice = Client(acl_gateway.mqtt_port, "alice", v5=v5, username="alice", password="wonderland")
    clients.append(alice)

    denied = alice.publish("sensors/bob/temp", b"forged", qos=1)
    assert denied.is_published(), "a denied QoS 1 publish must still be acknowledged"
    # 3.1.1 has no negative PUBACK; MQTT 5 says why (§3.4.2.1).
    assert ack_for(alice, denied.mid) == (0x87 if v5 else 0x00)

    alice.publish("sensors/alice/temp", b"real", qos=1)
    message = bob.expect()
    assert (message.topic, message.payload) == ("sensors/alice/temp", b"real")
    bob.expect_none(0.3)
    assert log_lines_with(acl_gateway, "alice", "sensors/bob/temp")


def test_acl_pattern_lets_a_client_write_only_under_its_own_id(acl_gateway: Gateway, clients: list[Client]) -> None:
    alice = Client(acl_gateway.mqtt_port, "alice", username="alice", password="wonderland")
    clients.append(alice)
    assert [code(c) for c in alice.subscribe("devices/#", 1)] == [1]
    dev1 = Client(acl_gateway.mqtt_port, "dev1")
    clients.append(dev1)
    dev2 = Client(acl_gateway.mqtt_port, "dev2", v5=True)
    clients.append(dev2)

    dev1.publish("devices/dev2/temp", b"spoofed by dev1", qos=1)
    dev1.publish("devices/dev1/temp", b"dev1 own", qos=1)
    message = alice.expect()
    assert (message.topic, message.payload) == ("devices/dev1/temp", b"dev1 own")

    spoof = dev2.publish("devices/dev1/temp", b"spoofed by dev2", qos=1)
    assert ack_for(dev2, spoof.mid) == 0x87
    dev2.publish("devices/dev2/temp", b"dev2 own", qos=1)
    message = alice.expect()
    assert (message.topic, message.payload) == ("devices/dev2/temp", b"dev2 own")
    alice.expect_none(0.3)


# ---------------------------------------------------------------------------------------------------------------
# TLS


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (certificate, key) PEM files."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if importlib.util.find_spec("cryptography") is not None:
        x509 = importlib.import_module("cryptography.x509")
        ec = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ec")
        hashes = importlib.import_module("cryptography.hazmat.primitives.hashes")
        serialization = importlib.import_module("cryptography.hazmat.primitives.serialization")
        private_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(private_key, hashes.SHA256())
        )
        cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    else:
        request = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost"
        san = "subjectAltName=DNS:localhost,IP:127.0.0.1"
        command = ["openssl", *request.split(), "-addext", san, "-keyout", str(key), "-out", str(cert)]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_listener_exchanges_messages_with_plain_tcp_clients(
    gateway_factory: GatewayFactory, tmp_path: Path, clients: list[Client]
) -> None:
    cert, key = make_certificate(tmp_path)
    gw = gateway_factory(f'[mqtt]\ntls = true\ntls_port = 0\ncertfile = "{cert}"\nkeyfile = "{key}"\n')
    assert re.search(r"listening .*mqtts=127\.0\.0\.1:\d+", gw.log())
    tls_port = gw.endpoints["mqtts"]
    assert tls_port not in (0, gw.mqtt_port)

    secure = Client(tls_port, "over-tls", connect=False)
    clients.append(secure)
    secure.paho.tls_set(ca_certs=str(cert))
    _flags, rc, _props = secure.connect()
    assert code(rc) == 0
    plain = Client(gw.mqtt_port, "over-tcp")
    clients.append(plain)
    assert [code(c) for c in secure.subscribe("tls/to-secure", 1)] == [1]
    assert [code(c) for c in plain.subscribe("tls/to-plain", 1)] == [1]

    plain.publish("tls/to-secure", b"plain -> tls", qos=1)
    message = secure.expect()
    assert (message.topic, message.payload) == ("tls/to-secure", b"plain -> tls")
    secure.publish("tls/to-plain", b"tls -> plain", qos=1)
    message = plain.expect()
    assert (message.topic, message.payload) == ("tls/to-plain", b"tls -> plain")

    # Plain MQTT on the TLS port is turned away without hurting the listener.
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as sock:
        sock.sendall(connect_packet("plain-on-tls-port"))
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert not answer.startswith(b"\x20\x02"), "a plain-TCP client must not get a CONNACK on the TLS port"

    result = mosquitto_pub(tls_port, "--cafile", str(cert), "-t", "tls/to-plain", "-m", "mosquitto over tls", "-q", "1")
    assert result.returncode == 0, result.stderr
    message = plain.expect()
    assert (message.topic, message.payload) == ("tls/to-plain", b"mosquitto over tls")


# ---------------------------------------------------------------------------------------------------------------
# Limits


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
def test_oversized_packet_closes_only_that_connection(
    gateway_factory: GatewayFactory, clients: list[Client], raw: RawFactory, version: int
) -> None:
    gw = gateway_factory("[mqtt]\nmax_packet_size = 1024\n")
    watcher = Client(gw.mqtt_port, "watcher")
    clients.append(watcher)
    watcher.subscribe("big/#", 0)
    other = Client(gw.mqtt_port, "other-publisher")
    clients.append(other)

    big = raw(gw.mqtt_port, version=version)
    assert big.connect("bigsender").code == 0
    big.send(publish_packet("big/fits", b"f" * 900, version=version))  # about 915 bytes: under the limit
    assert watcher.expect().payload == b"f" * 900
    big.send(publish_packet("big/too-large", b"x" * 2000, version=version))
    packets = big.read_until_closed()
    if version == 5:  # §3.2.2.3.6: "the Server will DISCONNECT with Reason Code 0x95 (Packet too large)"
        assert [(first, body[:1]) for first, body in packets] == [(DISCONNECT, b"\x95")]
    else:
        assert packets == []

    other.publish("big/after", b"still routed", qos=1)
    message = watcher.expect()
    assert (message.topic, message.payload) == ("big/after", b"still routed")
    watcher.expect_none(0.2)
    assert watcher.paho.is_connected() and other.paho.is_connected()
    lines = log_lines_with(gw, "bigsender", big.peer)
    assert any("1024" in line or "too large" in line.lower() for line in lines), gw.log()


def test_max_connections_refuses_the_fourth_client(
    gateway_factory: GatewayFactory, clients: list[Client], raw: RawFactory
) -> None:
    gw = gateway_factory("[mqtt]\nmax_connections = 3\n")
    first = [Client(gw.mqtt_port, f"client-{i}") for i in range(3)]
    clients.extend(first)

    fourth = raw(gw.mqtt_port)
    assert fourth.connect("client-3", check=False).code == 0x03  # 3.1.1: server unavailable
    assert fourth.read_until_closed() == []
    assert log_lines_with(gw, fourth.peer, "refused")

    assert [code(c) for c in first[0].subscribe("busy/#", 1)] == [1]
    first[1].publish("busy/one", b"1", qos=1)
    first[2].publish("busy/two", b"2", qos=1)
    assert sorted(first[0].expect().payload for _ in range(2)) == [b"1", b"2"]

    # A place freed by a leaving client is available again.
    first[2].close()

    def fifth_connects() -> bool:
        return raw(gw.mqtt_port).connect("client-4", check=False).code == 0

    assert wait_until(fifth_connects, timeout=5)


# ---------------------------------------------------------------------------------------------------------------
# Hostile input

MALFORMED: list[tuple[str, bytes, str]] = [
    # (what, bytes, a word the log line must contain besides the peer; "" for any reason)
    ("garbage", b"\xde\xad\xbe\xef" * 8, ""),
    ("five-byte remaining length", b"\x10\xff\xff\xff\xff\x7f", "length"),
    ("reserved packet type 0", connect_packet("type-0") + b"\x00\x00", ""),
    ("reserved packet type 15", connect_packet("type-15") + b"\xf0\x00", ""),
    ("reserved packet type 0 first", b"\x00\x00", ""),
    ("reserved packet type 15 first", b"\xf0\x00", ""),
    ("publish with QoS 3", connect_packet("qos-3") + packet(0x36, mqtt_str("a/b") + b"\x00\x01payload"), "qos"),
    ("protocol name XYZ", connect_packet("xyz", protocol_name=b"XYZ"), "protocol"),
    ("invalid UTF-8 topic", connect_packet("utf8") + publish_packet(b"bad/\xff\xfe", b"payload"), "utf-8"),
    ("subscribe without filters", connect_packet("no-filter") + packet(0x82, b"\x00\x01"), "subscribe"),
]


def test_malformed_input_never_crashes_the_broker(gateway_factory: GatewayFactory, clients: list[Client]) -> None:
    gateway = gateway_factory("[mqtt]\nsys_interval = 1\n")
    assert gateway.process is not None
    peers: dict[str, str] = {}
    for what, data, _word in MALFORMED:
        conn = RawClient(gateway.mqtt_port)
        try:
            conn.send(data)
            packets = conn.read_until_closed(timeout=10)
        finally:
            conn.close()
        # Only a CONNACK accepting the valid CONNECT in front of the bad packet may come back.
        assert all(p == (CONNACK, b"\x00\x00") for p in packets), f"{what}: {packets}"
        peers[what] = conn.peer

    truncated = RawClient(gateway.mqtt_port)
    truncated.send(connect_packet("truncated")[:9])
    truncated.close()

    rng = random.Random(20240229)
    for i in range(10_000):
        data = rng.randbytes(rng.randint(1, 64))
        if i % 2:  # past a valid CONNECT, so that the other packet decoders see it too
            data = connect_packet(f"fuzz-{i}") + data
        # The gateway may close first: a failing send is fine.
        with (
            socket.create_connection(("127.0.0.1", gateway.mqtt_port), timeout=10) as sock,
            contextlib.suppress(OSError),
        ):
            sock.sendall(data)

    assert gateway.process.poll() is None, gateway.log()[-3000:]
    # The gateway may still be closing the fuzz connections and so be at its connection limit for a moment:
    # "server unavailable" (3) is then the right answer, and the client tries again.
    deadline = time.monotonic() + 20
    while True:
        sub = Client(gateway.mqtt_port, "after-fuzz-sub", connect=False)
        clients.append(sub)
        _flags, rc, _props = sub.connect()
        if rc == 0:
            break
        # paho reports the 3.1.1 return code 3 by its MQTT 5 name
        assert str(rc) == "Server unavailable" and time.monotonic() < deadline, f"CONNACK {rc}"
        sub.paho.loop_stop()
        time.sleep(0.2)
    sub.subscribe("still/alive", 1)
    pub = Client(gateway.mqtt_port, "after-fuzz-pub", v5=True)
    clients.append(pub)
    pub.publish("still/alive", b"yes", qos=1)
    assert sub.expect().payload == b"yes"
    assert gateway.process.poll() is None

    # Nothing is left behind by the thousands of broken connections: two clients, two sessions.
    sub.subscribe("$SYS/broker/clients/#", 0)
    counts: dict[str, bytes] = {}
    deadline = time.monotonic() + 5
    while counts.get("connected") != b"2" or counts.get("total") != b"2":
        assert time.monotonic() < deadline, f"$SYS/broker/clients/...: {counts}"
        message = sub.expect(timeout=5)
        counts[message.topic.rsplit("/", 1)[1]] = bytes(message.payload)

    log = gateway.log()
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 500) :][:3000]
    for what, _data, word in MALFORMED:
        lines = log_lines_with(gateway, peers[what])
        reasons = [line.split(peers[what], 1)[1] for line in lines]
        assert any(len(r.strip(" ):;")) > 10 and word in r.lower() for r in reasons), (
            f"{what}: no log line names {peers[what]} with a reason{f' about {word!r}' if word else ''}: {lines}"
        )


# ---------------------------------------------------------------------------------------------------------------
# A subscriber that stops reading


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_stalled_subscriber_does_not_grow_memory(
    gateway_factory: GatewayFactory, clients: list[Client], raw: RawFactory
) -> None:
    gw = gateway_factory("[mqtt]\nmax_queued_messages = 100\nsys_interval = 1\n")
    assert gw.process is not None
    pid = gw.process.pid

    stalled = raw(gw.mqtt_port, rcvbuf=4096)
    assert stalled.connect("stalled").code == 0
    stalled.send(subscribe_packet(1, [("flood/#", 1)]))
    assert stalled.read() == (SUBACK, b"\x00\x01\x01")
    # From now on nothing is read from `stalled`.

    fast = Client(gw.mqtt_port, "fast")
    clients.append(fast)
    assert [code(c) for c in fast.subscribe("flood/#", 1)] == [1]
    publisher = Client(gw.mqtt_port, "publisher", connect=False)
    clients.append(publisher)
    publisher.paho.max_inflight_messages_set(100)
    publisher.connect()

    baseline = rss_bytes(pid)
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    total, batch, size = 20_000, 50, 2048
    payload = b"p" * size
    received: set[int] = set()
    last = {"flood/0": -1, "flood/1": -1}
    try:
        for start in range(0, total, batch):
            # Paced by the fast subscriber, whose own queue therefore never fills; the stalled one's does.
            for i in range(start, start + batch):
                publisher.publish(f"flood/{i % 2}", b"%08d" % i + payload, qos=i % 2, wait=False)
            for _ in range(batch):
                message = fast.expect(timeout=10)
                index = int(message.payload[:8])
                assert index > last[message.topic], f"{message.topic}: {index} after {last[message.topic]} (§4.6)"
                last[message.topic] = index
                received.add(index)
    finally:
        done.set()
        sampler.join()
    assert received == set(range(total))
    growth = peak - baseline
    # Unbounded, the stalled subscriber's queue would hold all of the 40 MB that passed (about 50 MB of RSS).
    assert growth < 20 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB while {total * size / 1e6:.0f} MB passed"
    assert gw.process.poll() is None

    watcher = Client(gw.mqtt_port, "sys-watcher")
    clients.append(watcher)
    watcher.subscribe("$SYS/broker/messages/dropped", 0)
    deadline = time.monotonic() + 5
    dropped = 0
    while dropped == 0 and time.monotonic() < deadline:
        dropped = int(watcher.expect(timeout=5).payload)
    assert dropped > 0, "the stalled subscriber's overflow must be counted in $SYS/broker/messages/dropped"


# ---------------------------------------------------------------------------------------------------------------
# Shutdown


def test_sigterm_with_connected_clients_exits_cleanly(gateway: Gateway, clients: list[Client], raw: RawFactory) -> None:
    v5 = Client(gateway.mqtt_port, "paho-v5", v5=True)
    clients.append(v5)
    v311 = Client(gateway.mqtt_port, "paho-v311")
    clients.append(v311)
    assert [code(c) for c in v5.subscribe("shutdown/#", 1)] == [1]
    conn = raw(gateway.mqtt_port, version=5)
    assert conn.connect("raw-v5").code == 0
    # A subscriber that stopped reading, with a backlog, must not hold the shutdown up.
    stalled = raw(gateway.mqtt_port, version=5, rcvbuf=4096)
    assert stalled.connect("stalled").code == 0
    stalled.send(subscribe_packet(1, [("shutdown/#", 1)], version=5))
    assert stalled.read()[0] == SUBACK
    for i in range(200):
        v311.publish("shutdown/backlog", b"%04d" % i + b"b" * 1000, qos=1, wait=False)
    v311.publish("shutdown/backlog", b"last", qos=1)
    assert wait_until(lambda: v5.messages.qsize() == 201)

    started = time.monotonic()
    assert gateway.stop() == 0
    assert time.monotonic() - started < 5, "SIGTERM must stop the gateway within a few seconds"

    packets = conn.read_until_closed(timeout=5)
    assert [first for first, _body in packets] == [DISCONNECT], packets
    assert packets[0][1][0] == 0x8B  # server shutting down
    assert code(v5.disconnects.get(timeout=5)) == 0x8B
    v311.disconnects.get(timeout=5)  # just closed: 3.1.1 has no server DISCONNECT
    log = gateway.log()
    assert "stopped" in log
    problems = [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]
    assert not problems, f"a clean shutdown logs no errors:\n{log[log.index('stopping') :]}"


# ---------------------------------------------------------------------------------------------------------------
# Configuration errors


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[mqtt]\nmax_conections = 5\n", "max_conections", "unknown"),
        ('[mqtt]\nport = "x"\n', "port", "expected int"),
        ("[mqtt]\nport = 70000\n", "port", "maximum"),
        ("[mqtt]\nmax_packet_size = 10\n", "max_packet_size", "minimum"),
        ("[mqtt]\nsys_interval = -1\n", "sys_interval", "minimum"),
        ('[gateway]\nlog_level = "loud"\n', "log_level", "not one of"),
        ("[mqttt]\nport = 1883\n", "mqttt", "unknown"),
        ("[mqtt\nport = 1883\n", "line 1", "TOML"),
        ("[mqtt]\ntls = true\n", "certfile", "needs"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "above-maximum",
        "below-minimum",
        "negative-float",
        "bad-choice",
        "unknown-table",
        "bad-toml",
        "tls-without-certificate",
    ],
)
def test_config_error_exits_2_naming_file_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    data = tmp_path / "data"
    result = gateway_cli(
        "serve", "--config", str(config), "--data-dir", str(data), "--mqtt-port", "0", "--http-port", "0"
    )
    assert result.returncode == 2, result.stderr
    assert str(config) in result.stderr
    assert key in result.stderr
    assert reason.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("problem", ["missing", "not-pem"])
def test_unusable_tls_certificate_exits_2_naming_the_file(tmp_path: Path, problem: str) -> None:
    certfile = tmp_path / "absent" / "cert.pem"
    _cert, keyfile = make_certificate(tmp_path)
    if problem == "not-pem":
        certfile = tmp_path / "garbage.pem"
        certfile.write_text("this is not a certificate\n")
    config = tmp_path / "gateway.toml"
    config.write_text(f'[mqtt]\ntls = true\ntls_port = 0\ncertfile = "{certfile}"\nkeyfile = "{keyfile}"\n')
    data = tmp_path / "data"
    result = gateway_cli(
        "serve", "--config", str(config), "--data-dir", str(data), "--mqtt-port", "0", "--http-port", "0"
    )
    # Like a missing password file: a configuration problem, reported with what is wrong where.
    assert str(certfile) in result.stderr, f"stderr does not name the certificate file: {result.stderr!r}"
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_gateway_config_output_is_toml_that_starts_the_gateway(
    gateway_factory: GatewayFactory, clients: list[Client]
) -> None:
    result = gateway_cli("config")
    assert result.returncode == 0, result.stderr
    parsed = tomllib.loads(result.stdout)
    assert parsed["mqtt"]["port"] == 1883
    assert parsed["mqtt"]["max_packet_size"] == 1_048_576
    assert parsed["mqtt"]["allow_anonymous"] is True
    assert parsed["gateway"]["log_level"] == "info"
    assert len(parsed["mqtt"]) >= 20

    gw = gateway_factory(result.stdout, name="from-config")
    assert gw.config is not None
    assert str(gw.config) in gw.log()
    sub = Client(gw.mqtt_port, "documented-sub")
    clients.append(sub)
    sub.subscribe("defaults/ok", 1)
    pub = Client(gw.mqtt_port, "documented-pub")
    clients.append(pub)
    pub.publish("defaults/ok", b"started", qos=1)
    assert sub.expect().payload == b"started"


def _drain(client: Client, wait: float = 1.0) -> list[bytes]:
    got = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            got.append(bytes(client.messages.get(timeout=max(0.01, deadline - time.monotonic())).payload))
        except queue.Empty:
            break
    return got


def test_queued_bytes_per_client_are_bounded(gateway_factory: Callable[..., Gateway], clients: list[Client]) -> None:
    """A client that is away costs at most max_queued_bytes: the oldest messages are kept, newer ones dropped
    and counted in $SYS/broker/messages/dropped."""
    gateway = gateway_factory("[mqtt]\nmax_queued_bytes = 1000\nsys_interval = 1\n")
    port = gateway.mqtt_port
    sub = Client(port, "away", clean=False)
    clients.append(sub)
    assert sub.subscribe("bytes/#", 1) == [1]
    sub.close()
    pub = Client(port, "bytes-pub")
    clients.append(pub)
    for i in range(5):
        pub.publish("bytes/t", bytes([65 + i]) * 300, 1)
    back = Client(port, "away", clean=False)
    clients.append(back)
    assert [p[:1] for p in _drain(back)] == [b"A", b"B", b"C"]
    watcher = Client(port, "bytes-watch")
    clients.append(watcher)
    watcher.subscribe("$SYS/broker/messages/dropped", 0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if int(watcher.expect(5).payload) >= 2:
            break
    else:
        raise AssertionError("drops not counted in $SYS/broker/messages/dropped")
    assert "messages dropped so far" in gateway.log()


def test_retained_bytes_are_bounded(gateway_factory: Callable[..., Gateway], clients: list[Client]) -> None:
    """Retained messages live in memory: beyond max_retained_bytes a new one is routed but not kept, while
    replacing or deleting existing ones still works."""
    gateway = gateway_factory("[mqtt]\nmax_retained_bytes = 1000\n")
    port = gateway.mqtt_port
    pub = Client(port, "ret-pub")
    clients.append(pub)
    live = Client(port, "ret-live")
    clients.append(live)
    live.subscribe("ret/#", 0)
    for name in ("a", "b", "c"):
        pub.publish(f"ret/{name}", name.encode() * 400, 1, retain=True)
    assert sorted(p[:1] for p in _drain(live)) == [b"a", b"b", b"c"]  # all three routed
    late = Client(port, "ret-late")
    clients.append(late)
    late.subscribe("ret/#", 0)
    assert sorted(p[:1] for p in _drain(late)) == [b"a", b"b"]  # the third was not kept
    pub.publish("ret/a", b"", 1, retain=True)  # deleting frees room
    pub.publish("ret/c", b"c" * 400, 1, retain=True)
    later = Client(port, "ret-later")
    clients.append(later)
    later.subscribe("ret/#", 0)
    assert sorted(p[:1] for p in _drain(later)) == [b"b", b"c"]
    assert "max_retained_bytes" in gateway.log()
