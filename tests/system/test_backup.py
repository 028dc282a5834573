"""`gateway backup` and `gateway restore` as a user runs them: real gateway processes, the CLI as a subprocess."""

from __future__ import annotations

import http.server
import io
import json
import queue
import re
import socket
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import REPO, Client, Gateway

S = 1_000_000_000
T0 = 1_700_000_000 * S
TOKEN = "s3cret"


def gateway_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "gateway", *args]
    return subprocess.run(command, check=False, cwd=REPO, capture_output=True, timeout=120)


def query(gateway: Gateway, sql: str) -> tuple[int, Any]:
    url = f"{gateway.http_url}/db/query?" + urllib.parse.urlencode({"q": sql})
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def stored(gateway: Gateway, table: str = "example") -> list[list[Any]]:
    status, body = query(gateway, f"select name, time, value from {table} order by time")
    assert status == 200, body
    rows: list[list[Any]] = body["data"]["rows"]
    return rows


def publish(gateway: Gateway, clients: list[Client], times: range, *, retained: str | None = None) -> None:
    """QoS 1 readings `temp` at T0 + i s with value i + 0.5, each acknowledged (so durable) before this returns."""
    client = Client(gateway.mqtt_port, "sensor")
    clients.append(client)
    for i in times:
        client.publish("db/append/EXAMPLE", json.dumps([["temp", T0 + i * S, i + 0.5]]), 1)
    if retained is not None:
        client.publish(f"status/{retained}", retained.encode(), 1, retain=True)
    client.close()


def rows_for(times: range) -> list[list[Any]]:
    return [["temp", T0 + i * S, i + 0.5] for i in times]


def retained_topics(gateway: Gateway, clients: list[Client]) -> set[str]:
    client = Client(gateway.mqtt_port, "reader")
    clients.append(client)
    client.subscribe("status/#", 1)
    topics = set()
    try:
        while True:
            topics.add(client.expect(timeout=1.0).topic)
    except queue.Empty:  # every retained message has arrived
        pass
    client.close()
    return topics


def written_size(output: str) -> int:
    match = re.search(r"wrote .* \((\d+) bytes\)", output)
    assert match, output
    return int(match.group(1))


def test_backup_of_a_stopped_gateway_then_restore_brings_back_exactly_that_data(
    gateway_factory: Callable[..., Gateway], clients: list[Client], tmp_path: Path
) -> None:
    gateway = gateway_factory(f'[http]\ntoken = "{TOKEN}"\n')
    publish(gateway, clients, range(5), retained="before")
    gateway.stop()
    archive = tmp_path / "nightly.tar.gz"
    result = gateway_cli("backup", str(archive), "--data-dir", str(gateway.data_dir))
    assert result.returncode == 0, result.stderr
    assert written_size(result.stdout.decode()) == archive.stat().st_size > 0
    assert "no gateway running" in result.stdout.decode()
    assert not archive.with_name("nightly.tar.gz.partial").exists()

    # Life goes on: more readings, another table, a retained message, then a table is dropped.
    gateway.start()
    publish(gateway, clients, range(5, 10), retained="after")
    status, body = query(gateway, "drop table example")
    assert status == 200, body
    publish(gateway, clients, range(20, 22))
    assert stored(gateway) == rows_for(range(20, 22))
    gateway.stop()

    result = gateway_cli("restore", str(archive), "--data-dir", str(gateway.data_dir))
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    match = re.search(r"previous data was moved to (\S+)", out)
    assert match, out
    aside = Path(match.group(1))
    assert aside.parent == gateway.data_dir and sorted(p.name for p in aside.iterdir()) == ["broker", "store"]
    assert "start the gateway again" in out

    gateway.start()
    assert stored(gateway) == rows_for(range(5))
    assert retained_topics(gateway, clients) == {"status/before"}  # the broker's database came back too

    # While the gateway runs, a restore is refused with one line, and nothing changes.
    result = gateway_cli("restore", str(archive), "--data-dir", str(gateway.data_dir))
    assert result.returncode == 1
    error = result.stderr.decode()
    assert error.count("\n") == 1 and "a gateway is running" in error and "was not changed" in error
    assert stored(gateway) == rows_for(range(5))
    assert sorted(p.name for p in gateway.data_dir.iterdir() if p.name.startswith("before-restore-")) == [aside.name]


def test_backup_to_standard_output(gateway: Gateway, clients: list[Client]) -> None:
    publish(gateway, clients, range(3))
    gateway.stop()
    result = gateway_cli("backup", "-", "--data-dir", str(gateway.data_dir))
    assert result.returncode == 0, result.stderr
    assert written_size(result.stderr.decode()) == len(result.stdout)
    with tarfile.open(fileobj=io.BytesIO(result.stdout), mode="r:gz") as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        assert json.load(manifest_file)["databases"] == ["broker", "store"]


def test_backup_of_a_directory_without_a_gateway_fails_in_one_line(tmp_path: Path) -> None:
    result = gateway_cli("backup", str(tmp_path / "b.tar.gz"), "--data-dir", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1 and "no gateway databases" in result.stderr.decode()
    assert list(tmp_path.iterdir()) == []


@contextmanager
def fake_gateway(status: int, content_type: str, body: bytes) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering every GET with one fixed response; yields its URL and the Authorization headers
    it received."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(f"{self.path} {self.headers.get('Authorization')}")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_refusal_of_the_gateway_is_printed_with_its_reason(tmp_path: Path) -> None:
    reason = b'{"success": false, "reason": "backup needs the API token: send \'Authorization: Bearer <token>\'"}'
    target = tmp_path / "b.tar.gz"
    with fake_gateway(401, "application/json", reason) as (url, seen):
        result = gateway_cli("backup", str(target), "--url", url, "--token", "wrong")
    assert result.returncode == 1
    error = result.stderr.decode()
    assert error.count("\n") == 1 and "HTTP 401" in error and "backup needs the API token" in error
    assert seen == ["/api/backup Bearer wrong"]
    assert list(tmp_path.iterdir()) == []


def test_an_answer_that_is_not_a_backup_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "b.tar.gz"
    with fake_gateway(200, "application/gzip", b"\x1f\x8b not really gzip") as (url, _seen):
        result = gateway_cli("backup", str(target), "--url", url)
    assert result.returncode == 1
    assert "not a usable gateway backup" in result.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_live_backup_of_a_running_gateway_is_restored(
    gateway_factory: Callable[..., Gateway], clients: list[Client], tmp_path: Path
) -> None:
    """Needs the gateway's GET /api/backup. The CLI finds the databases locked and asks the gateway, at the
    address and with the token of the configuration file, while a sensor keeps publishing."""
    port = free_port()
    gateway = gateway_factory(
        f'[http]\nport = {port}\ntoken = "{TOKEN}"\n', extra_args=("--http-port", str(port))
    )  # the last --http-port wins over the fixture's 0
    publish(gateway, clients, range(100), retained="before")

    busy = Client(gateway.mqtt_port, "busy-sensor")
    clients.append(busy)
    stop = threading.Event()
    sent: list[int] = []

    def keep_publishing() -> None:
        i = 1000
        while not stop.is_set():
            busy.publish("db/append/EXAMPLE", json.dumps([["busy", T0 + i * S, 1.0]]), 1)
            sent.append(i)
            i += 1

    thread = threading.Thread(target=keep_publishing)
    thread.start()
    archive = tmp_path / "live.tar.gz"
    try:
        result = gateway_cli(
            "backup", str(archive), "--config", str(gateway.config), "--data-dir", str(gateway.data_dir)
        )
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stderr.decode()
    assert f"the running gateway at http://127.0.0.1:{port}" in result.stdout.decode()
    assert written_size(result.stdout.decode()) == archive.stat().st_size
    during = len(sent)

    publish(gateway, clients, range(100, 110), retained="after")
    gateway.stop()
    result = gateway_cli("restore", str(archive), "--data-dir", str(gateway.data_dir))
    assert result.returncode == 0, result.stderr.decode()
    gateway.start()
    assert stored(gateway)[:100] == rows_for(range(100))  # everything acknowledged before the backup
    rows = stored(gateway)
    assert not any(row[0] == "temp" and row[1] >= T0 + 100 * S for row in rows)  # nothing from after it
    # The sensor sends each reading once the previous one is acknowledged, so a snapshot at one point in time holds
    # a prefix of its readings; some of them, since it was publishing before the backup started.
    busy_times = [(row[1] - T0) // S for row in rows if row[0] == "busy"]
    assert 0 < len(busy_times) <= during and busy_times == sent[: len(busy_times)]
    assert retained_topics(gateway, clients) == {"status/before"}
