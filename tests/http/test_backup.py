"""GET /api/backup over a real HTTP server (waitress, in this process) with a stand-in for the archive maker."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import re
import tarfile
import wsgiref.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.http.api import make_app
from gateway.http.backup import is_loopback
from gateway.http.base import ApiContext
from gateway.http.server import HttpServer
from gateway.store.database import TimeSeriesStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TimeSeriesStore]:
    store = TimeSeriesStore(tmp_path / "store")
    yield store
    asyncio.run(store.close())


def archive_maker(folder: Path, made: list[Path], size: int = 200_000) -> Callable[[], Path]:
    """Writes a .tar.gz holding one file of `size` bytes, as the real backup would, and remembers its path."""

    def backup() -> Path:
        path = folder / f"backup-{len(made)}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            data = bytes(range(256)) * (size // 256)
            info = tarfile.TarInfo("store/data")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        made.append(path)
        return path

    return backup


@pytest.fixture
def serve(store: TimeSeriesStore) -> Iterator[Callable[..., int]]:
    """Starts an HTTP server for an ApiContext built from the keyword arguments; returns its port."""
    servers: list[HttpServer] = []
    loop = asyncio.new_event_loop()  # backups do not use the loop; the context needs one

    def start(**context: Any) -> int:
        server = HttpServer(make_app(ApiContext(store, loop, **context)), "127.0.0.1", 0)
        servers.append(server)
        return server.start()[1]

    yield start
    for server in servers:
        server.stop()
    loop.close()


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_a_backup_is_streamed_and_then_deleted(serve: Callable[..., int], tmp_path: Path) -> None:
    made: list[Path] = []
    port = serve(backup=archive_maker(tmp_path, made))  # no token: the board itself may take a backup
    status, headers, body = get(port, "/api/backup")
    assert status == 200
    assert headers["Content-Type"] == "application/gzip"
    assert re.fullmatch(r'attachment; filename="gateway-backup-\d{8}-\d{6}\.tar\.gz"', headers["Content-Disposition"])
    assert int(headers["Content-Length"]) == len(body)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        member = tar.extractfile("store/data")
        assert member is not None and len(member.read()) == 199_936
    assert len(made) == 1 and not made[0].exists()


def test_the_archive_is_deleted_when_the_client_goes_away(serve: Callable[..., int], tmp_path: Path) -> None:
    made: list[Path] = []
    port = serve(backup=archive_maker(tmp_path, made, size=20_000_000))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/api/backup")
    response = connection.getresponse()
    assert response.status == 200
    assert response.read(1000)
    connection.close()  # gone after a few bytes
    assert len(made) == 1 and not made[0].exists()
    assert get(port, "/healthz")[0] == 200  # and the server carries on


def test_a_configured_token_is_needed(serve: Callable[..., int], tmp_path: Path) -> None:
    made: list[Path] = []
    port = serve(token="s3cret", backup=archive_maker(tmp_path, made))
    status, _headers, body = get(port, "/api/backup")
    assert status == 401 and "needs the API token" in json.loads(body)["reason"]
    status, _headers, body = get(port, "/api/backup", {"Authorization": "Bearer wrong"})
    assert status == 401
    assert made == []  # nothing was made for the refused requests
    status, _headers, body = get(port, "/api/backup", {"Authorization": "Bearer s3cret"})
    assert status == 200 and body[:2] == b"\x1f\x8b"


def test_failures_are_json(serve: Callable[..., int]) -> None:
    status, headers, body = get(serve(), "/api/backup")
    assert status == 503 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"success": False, "reason": "backups are not available in this gateway"}

    def broken() -> Path:
        raise OSError(28, "No space left on device")

    status, _headers, body = get(serve(backup=broken), "/api/backup")
    assert status == 500 and "the backup failed" in json.loads(body)["reason"]


def call(app: Any, path: str, remote_addr: str, headers: dict[str, str] | None = None) -> tuple[str, bytes]:
    """Runs one request through the WSGI app directly, from any client address."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REMOTE_ADDR": remote_addr}
    wsgiref.util.setup_testing_defaults(environ)
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    answer: list[str] = []
    body = app(environ, lambda status, _headers, _exc=None: answer.append(status))
    try:
        return answer[0], b"".join(body) if isinstance(body, list) else b"".join(iter(body))
    finally:
        if hasattr(body, "close"):
            body.close()


def test_without_a_token_only_the_board_itself_may_take_a_backup(store: TimeSeriesStore, tmp_path: Path) -> None:
    made: list[Path] = []
    loop = asyncio.new_event_loop()
    try:
        app = make_app(ApiContext(store, loop, backup=archive_maker(tmp_path, made)))
        status, body = call(app, "/api/backup", "192.0.2.7")
        assert status.startswith("403") and "set [http] token" in json.loads(body)["reason"]
        # A forwarded-for header does not make a remote client local.
        status, body = call(app, "/api/backup", "192.0.2.7", {"X-Forwarded-For": "127.0.0.1"})
        assert status.startswith("403")
        assert made == []
        status, body = call(app, "/api/backup", "::1")
        assert status.startswith("200") and body[:2] == b"\x1f\x8b"
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.168.1.20", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("", False),
        ("localhost", False),
    ],
)
def test_loopback_addresses(address: str, local: bool) -> None:
    assert is_loopback(address) is local
