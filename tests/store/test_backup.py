"""Backup and restore on real RocksDB databases: consistency under writes, moving old data aside, hostile archives."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from rocksdict import Options, Rdict, WriteBatch

from gateway.mqtt.persist import BrokerState
from gateway.mqtt.session import Message
from gateway.store.backup import (
    BackupError,
    GatewayRunning,
    backup_archive,
    check_archive,
    opened_databases,
    restore_archive,
    scratch_dir,
)
from gateway.store.database import TimeSeriesStore
from tests.conftest import stored_readings

S = 1_000_000_000
T = TypeVar("T")
T0 = 1_700_000_000 * S


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def raw_db(path: Path) -> Rdict:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    return Rdict(str(path), options)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its content, to show that a refused restore changed nothing. LOCK files are
    listed but not read: closing a descriptor of one drops the POSIX lock this process may hold through RocksDB."""
    return {
        str(p.relative_to(root)): b"" if p.name == "LOCK" else p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def gateway_data(tmp_path: Path) -> Path:
    """A data directory as a stopped gateway leaves it: readings in store/, a retained message in broker/."""
    data = tmp_path / "data"

    async def fill() -> None:
        store = TimeSeriesStore(data / "store")
        await store.append("example", [("temp", T0 + i * S, float(i)) for i in range(10)], durable=True)
        await store.close()

    run(fill())
    state = BrokerState(data / "broker")
    state.put_retained(Message("status/board", b"online", 1, True))
    state.close()
    return data


@pytest.fixture
def archive(gateway_data: Path, tmp_path: Path) -> Path:
    with opened_databases(gateway_data) as databases:
        assert sorted(databases) == ["broker", "store"]
        made = backup_archive(databases, scratch_dir(gateway_data))
    return made.rename(tmp_path / "backup.tar.gz")


# -- backup ------------------------------------------------------------------------------------------------------


def test_backup_while_another_thread_writes_is_a_consistent_snapshot(tmp_path: Path) -> None:
    """Pairs of keys are written in one WriteBatch each, non-stop, while backups are taken: every restored
    snapshot holds whole pairs only, and a number of them between what was written before and after the backup."""
    data = tmp_path / "live"
    db = raw_db(data / "store")
    written = [0]
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            batch = WriteBatch(raw_mode=True)
            batch.put(b"pair%08d/a" % i, b"a" * 50)
            batch.put(b"pair%08d/b" % i, b"b" * 50)
            db.write(batch)
            i += 1
            written[0] = i

    thread = threading.Thread(target=writer)
    thread.start()
    snapshots: list[tuple[int, int, Path]] = []
    try:
        while written[0] < 2000:
            time.sleep(0.01)
        for _ in range(3):
            before = written[0]
            made = backup_archive({"store": db}, scratch_dir(data))
            snapshots.append((before, written[0], made))
    finally:
        stop.set()
        thread.join()
        db.close()
    # The backup ran while the writer went on: this is a test of concurrency, not of a quiet database.
    assert any(after > before for before, after, _ in snapshots)
    # Only the archives are in the scratch directory: no checkpoint is left behind.
    assert sorted(scratch_dir(data).iterdir()) == sorted(made for _, _, made in snapshots)
    for n, (before, after, made) in enumerate(snapshots):
        target = tmp_path / f"restored-{n}"
        assert restore_archive(made, target) is None  # nothing was there before
        restored = Rdict(str(target / "store"), Options(raw_mode=True))
        keys = [k for k, _ in restored.items() if isinstance(k, bytes)]
        restored.close()
        pairs: dict[bytes, set[bytes]] = {}
        for key in keys:
            pairs.setdefault(key[:12], set()).add(key[13:])
        assert all(halves == {b"a", b"b"} for halves in pairs.values()), "a WriteBatch is half in the snapshot"
        assert before <= len(pairs) <= after
        # A prefix of the writes: the snapshot is one point in time.
        assert sorted(pairs) == [b"pair%08d" % i for i in range(len(pairs))]


def test_archive_holds_a_manifest_and_both_databases(archive: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        manifest = json.load(manifest_file)
        assert all(member.isreg() for member in tar.getmembers())
    assert names[0] == "manifest.json"
    assert manifest["format"] == "gateway-backup" and manifest["format_version"] == 1
    assert manifest["databases"] == ["broker", "store"] and manifest["gateway_version"]
    assert "store/CURRENT" in manifest["files"] and "broker/CURRENT" in manifest["files"]
    assert sorted(names[1:]) == sorted(manifest["files"])
    assert check_archive(archive).databases == ("broker", "store")


def test_only_existing_databases_are_opened_and_nothing_is_created(tmp_path: Path) -> None:
    with opened_databases(tmp_path / "empty") as databases:
        assert databases == {}
    assert not (tmp_path / "empty").exists()
    with pytest.raises(BackupError, match="only store, broker exist"):
        backup_archive({}, tmp_path / "scratch")


def test_backup_failure_leaves_no_scratch_behind(tmp_path: Path) -> None:
    db = raw_db(tmp_path / "store")
    db.close()  # a closed database cannot be checkpointed
    scratch = tmp_path / "scratch"
    with pytest.raises(BackupError, match="cannot checkpoint the store database"):
        backup_archive({"store": db}, scratch)
    assert list(scratch.iterdir()) == []


# -- restore -----------------------------------------------------------------------------------------------------


def test_restore_moves_the_old_data_aside_and_brings_the_backup_back(gateway_data: Path, archive: Path) -> None:
    async def change() -> None:
        store = TimeSeriesStore(gateway_data / "store")
        await store.append("example", [("temp", T0 + 100 * S, 100.0)], durable=True)
        await store.append("other", [("x", T0, 1.0)], durable=True)
        await store.close()

    run(change())
    changed = stored_readings(gateway_data)
    aside = restore_archive(archive, gateway_data)
    assert aside is not None and aside.parent == gateway_data and aside.name.startswith("before-restore-")
    assert sorted(p.name for p in aside.iterdir()) == ["broker", "store"]
    assert stored_readings(aside) == changed  # the user's data is kept, whole
    assert stored_readings(gateway_data) == {("EXAMPLE", "temp"): [(T0 + i * S, float(i)) for i in range(10)]}
    state = BrokerState(gateway_data / "broker")
    assert [(m.topic, m.payload) for m in state.retained()] == [("status/board", b"online")]
    state.close()
    # No staging directory is left; a second restore gets an aside directory of its own.
    assert sorted(p.name for p in gateway_data.iterdir() if not p.name.startswith("backup-tmp")) == sorted(
        ["broker", "store", aside.name]
    )
    second = restore_archive(archive, gateway_data)
    assert second is not None and second != aside and second.exists() and aside.exists()


Member = tuple[tarfile.TarInfo, bytes | None]


def regular(name: str, content: bytes = b"evil") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    return info, content


def link(name: str, target: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def rewrite(archive: Path, target: Path, edit: Callable[[dict[str, Any]], None], extra: list[Member]) -> Path:
    """A copy of a good archive with `edit` applied to its manifest and `extra` members after the good ones."""
    with tarfile.open(archive, "r:gz") as source:
        members: list[Member] = [(m, source.extractfile(m).read()) for m in source.getmembers()]  # type: ignore[union-attr]
    manifest = json.loads(members[0][1] or b"")
    edit(manifest)
    with tarfile.open(target, "w:gz") as tar:
        for info, content in [regular("manifest.json", json.dumps(manifest).encode()), *members[1:], *extra]:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return target


def listing(name: str, size: int = 4) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest["files"].__setitem__(name, size)


def setting(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest.__setitem__(key, value)


def unchanged(manifest: dict[str, Any]) -> None:
    del manifest


HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], None], list[Member], str]] = {
    "path traversal": (unchanged, [regular("../evil")], "unexpected member '../evil'"),
    "traversal inside a database": (unchanged, [regular("store/../../evil")], "unexpected member"),
    "traversal listed in the manifest": (
        listing("store/../../evil"),
        [regular("store/../../evil")],
        "not a file of a database",
    ),
    "absolute path": (unchanged, [regular("/tmp/evil")], "unexpected member '/tmp/evil'"),
    "symlink": (listing("store/evil", 0), [link("store/evil", "/etc/passwd", tarfile.SYMTYPE)], "not a regular file"),
    "hard link": (listing("store/evil", 0), [link("store/evil", "../../evil", tarfile.LNKTYPE)], "not a regular file"),
    "unknown database": (
        setting("databases", ["store", "../etc"]),
        [regular("../etc/CURRENT")],
        "not among store, broker",
    ),
    "wrong format version": (setting("format_version", 99), [], "format version 99"),
    "not our manifest": (setting("format", "something-else"), [], "not a gateway-backup manifest"),
    "a file missing": (listing("store/000999.sst", 10), [], "missing: store/000999.sst"),
    "a size that differs": (
        listing("store/extra.sst", 5),
        [regular("store/extra.sst", b"123")],
        "has 3 bytes, the manifest says 5",
    ),
    "a file twice": (unchanged, [regular("store/CURRENT", b"MANIFEST-000001\n")], "store/CURRENT"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_change_nothing(
    case: str, gateway_data: Path, archive: Path, tmp_path: Path
) -> None:
    edit, extra, reason = HOSTILE[case]
    hostile = rewrite(archive, tmp_path / "hostile.tar.gz", edit, extra)
    before = tree(tmp_path)
    with pytest.raises(BackupError, match="not a usable gateway backup") as error:
        restore_archive(hostile, gateway_data)
    assert reason in str(error.value) and "was not changed" in str(error.value)
    assert tree(tmp_path) == before  # nothing written anywhere: not in the data directory, not next to it


def test_the_rewritten_archive_itself_is_accepted(gateway_data: Path, archive: Path, tmp_path: Path) -> None:
    """The hostile cases above are refused for what they add, not for how _rewrite copies an archive."""
    copy = rewrite(archive, tmp_path / "copy.tar.gz", unchanged, [])
    assert restore_archive(copy, gateway_data) is not None
    assert stored_readings(gateway_data)[("EXAMPLE", "temp")][0] == (T0, 0.0)


def _raw_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info, _ = regular(name, content)
            tar.addfile(info, io.BytesIO(content))
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b"just some bytes\n" * 100) or p, "not a complete .tar.gz file"),
        (lambda p: _raw_archive(p, {"store/CURRENT": b"x"}), "does not start with manifest.json"),
        (lambda p: _raw_archive(p, {"manifest.json": b"{not json"}), "manifest.json is not JSON"),
    ],
    ids=["not a tar", "missing manifest", "manifest not JSON"],
)
def test_archives_that_are_not_backups_are_refused(
    make: Callable[[Path], Path], reason: str, gateway_data: Path, tmp_path: Path
) -> None:
    bad = make(tmp_path / "bad.tar.gz")
    before = tree(tmp_path)
    with pytest.raises(BackupError, match=reason):
        restore_archive(bad, gateway_data)
    assert tree(tmp_path) == before


def test_a_truncated_archive_is_refused(gateway_data: Path, archive: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    before = tree(tmp_path)
    with pytest.raises(BackupError, match=r"not a complete \.tar\.gz file"):
        restore_archive(cut, gateway_data)
    assert tree(tmp_path) == before


# -- a running gateway -------------------------------------------------------------------------------------------


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Another process holding a database open, as a running gateway does."""
    code = (
        "import sys\n"
        "from rocksdict import Options, Rdict\n"
        "db = Rdict(sys.argv[1], Options(raw_mode=True))\n"
        "print('open', flush=True)\n"
        "sys.stdin.read()\n"
        "db.close()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "open\n"
        yield
    finally:
        process.communicate(timeout=10)


def test_restore_refuses_while_another_process_holds_the_database(gateway_data: Path, archive: Path) -> None:
    with held(gateway_data / "store"):
        before = tree(gateway_data / "store")  # as the holder left it when it opened the database
        with pytest.raises(GatewayRunning, match="a gateway is running on") as error:
            restore_archive(archive, gateway_data)
        assert tree(gateway_data / "store") == before
    assert "stop it first" in str(error.value) and "was not changed" in str(error.value)
    assert sorted(p.name for p in gateway_data.iterdir()) == ["backup-tmp", "broker", "store"]  # nothing moved


def test_opening_finds_the_running_gateway_and_lets_go_of_what_it_opened(gateway_data: Path) -> None:
    """The store database is opened first and is free; the broker database is held by "the gateway"."""
    with held(gateway_data / "broker"):
        before = tree(gateway_data / "broker")
        with (
            pytest.raises(GatewayRunning, match="is in use: a gateway is running on it") as error,
            opened_databases(gateway_data),
        ):
            pass
        # The probe leaves the running gateway's files alone: RocksDB would have rotated its info LOG.
        assert tree(gateway_data / "broker") == before
    # The store database was closed again: a second open in this process would fail on RocksDB's lock. (`error`
    # holds the traceback, so the first Rdict cannot have been closed by merely being garbage.)
    with opened_databases(gateway_data, ["store"]) as databases:
        assert list(databases) == ["store"] and error.traceback


def test_restore_refuses_while_this_process_holds_the_database(gateway_data: Path, archive: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(gateway_data / "store")
        try:
            with pytest.raises(GatewayRunning):
                restore_archive(archive, gateway_data)
            assert list(store.scan("example", "temp"))[-1] == (T0 + 9 * S, 9.0)  # still readable: not moved
        finally:
            await store.close()

    run(scenario())
    assert sorted(os.listdir(gateway_data)) == ["backup-tmp", "broker", "store"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files away")
def test_run_as_root_the_files_stay_the_gateway_users(gateway_data: Path, archive: Path) -> None:
    """`sudo gateway backup/restore` on the data of a gateway that runs as its own user (systemd's User=)."""
    user = (4321, 4322)
    for path in [gateway_data, *gateway_data.rglob("*")]:
        os.chown(path, *user)

    def owners() -> set[tuple[int, int]]:
        return {(p.lstat().st_uid, p.lstat().st_gid) for p in [gateway_data, *gateway_data.rglob("*")]}

    (scratch_dir(gateway_data)).rmdir()
    with opened_databases(gateway_data) as databases:  # an offline backup's open writes new RocksDB files
        backup_archive(databases, scratch_dir(gateway_data)).unlink()
    assert owners() == {user}
    restore_archive(archive, gateway_data)
    assert owners() == {user}
