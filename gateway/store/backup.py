"""Backup and restore of the gateway's databases as one .tar.gz archive.

A backup is a RocksDB checkpoint of each database (hard links to the immutable table files plus a copy of the
live manifest and log: a consistent point in time even while the gateway keeps writing), packed with a
`manifest.json` that lists every file and its size. A restore trusts nothing in the archive: it accepts only the
files the manifest names, as regular files under `store/` or `broker/`, extracts them into a staging directory
inside the data directory, checks that each database opens, and only then moves the current data aside (it is
never deleted) and puts the restored data in its place.

Knows nothing of MQTT or HTTP: the databases are given as open `Rdict`s by name.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from rocksdict import Checkpoint, Options, Rdict

from gateway import __version__

FORMAT = "gateway-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# The databases under the data directory: the readings (gateway/store) and the broker's sessions and retained
# messages (gateway/mqtt/persist.py).
DATABASES = ("store", "broker")
# A RocksDB file name (000012.sst, CURRENT, MANIFEST-000005, rocksdict-config.json): no separators, no leading
# dot, so no `.` or `..`.
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_COPY_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot be carried out; the message says why and what to do."""


class GatewayRunning(BackupError):
    """A database is held by a running gateway (RocksDB's LOCK file is locked by another opener)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    created: str
    gateway_version: str
    databases: tuple[str, ...]
    files: dict[str, int]  # "store/000012.sst" -> size in bytes


def scratch_dir(data_dir: Path) -> Path:
    """Where backups are assembled: inside the data directory, because a checkpoint hard-links the table files
    and so must be on the databases' file system."""
    return data_dir / "backup-tmp"


# -- backup -------------------------------------------------------------------------------------------------------


def backup_archive(databases: Mapping[str, Rdict], scratch: Path) -> Path:
    """Checkpoint each open database and pack the checkpoints into `scratch/backup-*.tar.gz`; returns that file,
    which the caller streams and deletes. Safe to call from any thread while the databases are being written."""
    unknown = sorted(set(databases) - set(DATABASES))
    if unknown or not databases:
        raise BackupError(f"cannot back up databases {unknown or '(none)'}: only {', '.join(DATABASES)} exist")
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        _give_back(scratch, scratch.parent.stat())  # the gateway's own backups need it after a `sudo gateway backup`
        work = Path(tempfile.mkdtemp(prefix="backup-", dir=scratch))
    except OSError as exc:
        raise BackupError(f"cannot make a scratch directory in {scratch}: {exc.strerror or exc}") from None
    archive = work.with_name(work.name + ".tar.gz")
    try:
        files: dict[str, int] = {}
        for name in sorted(databases):
            try:
                Checkpoint(databases[name]).create_checkpoint(str(work / name))
            except Exception as exc:
                raise BackupError(f"cannot checkpoint the {name} database: {exc}") from exc
            for path in sorted((work / name).iterdir()):
                if not path.is_file() or not _FILE_NAME.fullmatch(path.name):
                    raise BackupError(f"unexpected entry {path.name!r} in the checkpoint of the {name} database")
                files[f"{name}/{path.name}"] = path.stat().st_size
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "gateway_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "databases": sorted(databases),
            "files": files,
        }
        # Level 6, not 9: table files are already block-compressed, and a Pi's CPU is the bottleneck here.
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            raw = json.dumps(manifest, indent=2).encode()
            _add(tar, MANIFEST, io.BytesIO(raw), len(raw))
            for member, size in files.items():
                with (work / member).open("rb") as source:
                    _add(tar, member, source, size)
        return archive
    except OSError as exc:
        archive.unlink(missing_ok=True)
        raise BackupError(f"cannot write the backup in {scratch}: {exc.strerror or exc} (is the disk full?)") from None
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _add(tar: tarfile.TarFile, name: str, source: BinaryIO, size: int) -> None:
    # Members are made here as plain regular files: the table files of a checkpoint are hard links, which
    # tarfile.add could store as link members, and a restore accepts regular files only.
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(datetime.now(UTC).timestamp())
    tar.addfile(info, source)


# -- opening databases ----------------------------------------------------------------------------------------


def _exists(path: Path) -> bool:
    return (path / "CURRENT").is_file()


def _open(path: Path, log_dir: Path) -> Rdict:
    options = Options(raw_mode=True)
    # rocksdict creates the directory even when the open fails; callers check _exists first.
    options.create_if_missing(False)
    options.set_max_open_files(64)
    options.set_max_background_jobs(1)
    # RocksDB renames the database's info LOG and starts a new one *before* it tries the lock: a probe of a running
    # gateway's database would rotate the gateway's own log away. So this opener logs elsewhere.
    options.set_db_log_dir(str(log_dir))
    try:
        return Rdict(str(path), options)
    except Exception as exc:
        # RocksDB's words for a held lock: "While lock file: <path>/LOCK: Resource temporarily unavailable" from
        # another process, "lock hold by current process" from this one. (The lock is not probed with fcntl here:
        # closing any descriptor of the LOCK file would drop a lock this process holds through RocksDB.)
        message = str(exc)
        if "LOCK:" in message or "lock hold by" in message:
            raise GatewayRunning(f"the database in {path} is in use: a gateway is running on it") from exc
        raise BackupError(f"cannot open the database in {path}: {message}") from exc


@contextmanager
def opened_databases(data_dir: Path, names: Iterable[str] = DATABASES) -> Iterator[dict[str, Rdict]]:
    """The databases of `data_dir` that exist, opened read-write (which takes their locks) and closed on exit.
    Raises GatewayRunning if a gateway holds one of them."""
    with tempfile.TemporaryDirectory(prefix="gateway-rocksdb-log-") as log_dir, ExitStack() as stack:
        opened: dict[str, Rdict] = {}
        for name in names:
            path = data_dir / name
            if _exists(path):
                # Callbacks run last-in first-out: the ownership is fixed after the database is closed.
                stack.callback(_give_back, path, path.stat())
                opened[name] = _open(path, Path(log_dir))
                stack.callback(opened[name].close)
        yield opened


def _give_back(root: Path, owner: os.stat_result) -> None:
    """Run as root (`sudo gateway ...`), the files RocksDB creates on opening would be root's, and a gateway that
    runs as its own user could not write its database any more: they are given to `owner` (uid and gid)."""
    if os.geteuid() != 0:
        return
    for path in [root, *root.rglob("*")]:
        if path.lstat().st_uid != owner.st_uid or path.lstat().st_gid != owner.st_gid:
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def _ensure_stopped(data_dir: Path) -> None:
    for name in DATABASES:
        try:
            with opened_databases(data_dir, [name]):
                pass
        except GatewayRunning:
            raise GatewayRunning(
                f"a gateway is running on {data_dir} (its {name} database is locked): stop it first "
                "(e.g. `systemctl stop gateway`), then restore"
            ) from None
        except BackupError:
            pass  # unreadable current data is a reason to restore; it is moved aside, not used


# -- restore --------------------------------------------------------------------------------------------------


def _refuse(archive: Path, why: str) -> BackupError:
    return BackupError(f"{archive} is not a usable gateway backup: {why}")


def _parse_manifest(archive: Path, raw: bytes) -> Manifest:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _refuse(archive, f"{MANIFEST} is not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _refuse(archive, f"{MANIFEST} is not a {FORMAT} manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise _refuse(
            archive,
            f"it is format version {data.get('format_version')!r} (made by gateway {data.get('gateway_version')}); "
            f"this gateway {__version__} reads version {FORMAT_VERSION}",
        )
    databases, files = data.get("databases"), data.get("files")
    if (
        not isinstance(databases, list)
        or not databases
        or len(set(databases)) != len(databases)
        or not set(databases) <= set(DATABASES)
    ):
        raise _refuse(archive, f"its databases {databases!r} are not among {', '.join(DATABASES)}")
    if not isinstance(files, dict):
        raise _refuse(archive, f"{MANIFEST} has no list of files")
    for member, size in files.items():
        db, _, file_name = member.partition("/")
        if db not in databases or not _FILE_NAME.fullmatch(file_name):
            raise _refuse(archive, f"{MANIFEST} lists {member!r}, which is not a file of a database")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _refuse(archive, f"{MANIFEST} gives {member!r} the size {size!r}")
    for db in databases:
        if f"{db}/CURRENT" not in files:
            raise _refuse(archive, f"the {db} database has no CURRENT file")
    return Manifest(str(data.get("created")), str(data.get("gateway_version")), tuple(databases), dict(files))


def _check_member(archive: Path, member: tarfile.TarInfo, manifest: Manifest) -> None:
    # Only the files the manifest names, as regular files of the size it gives: no links, devices, directories,
    # absolute or `..` paths can get through, because none of those is a name the manifest may hold.
    expected = manifest.files.get(member.name)
    if expected is None:
        raise _refuse(archive, f"unexpected member {member.name!r}")
    if not member.isreg():
        raise _refuse(archive, f"{member.name!r} is not a regular file")
    if member.size != expected:
        raise _refuse(archive, f"{member.name!r} has {member.size} bytes, the manifest says {expected}")


def check_archive(archive: Path) -> Manifest:
    """Read the whole archive and check it against its manifest, without writing anything; returns the manifest."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isreg() or first.size > 1 << 20:
                raise _refuse(archive, f"it does not start with {MANIFEST}")
            source = tar.extractfile(first)
            assert source is not None  # a regular file
            manifest = _parse_manifest(archive, source.read())
            seen: set[str] = set()
            # To the end, member by member: a truncated or corrupted archive fails here, a hostile one at its first
            # unexpected member rather than after all of them are read.
            while (member := tar.next()) is not None:
                _check_member(archive, member, manifest)
                if member.name in seen:
                    raise _refuse(archive, f"{member.name!r} appears twice")
                seen.add(member.name)
            missing = sorted(set(manifest.files) - seen)
            if missing:
                raise _refuse(archive, f"files listed in {MANIFEST} are missing: {', '.join(missing[:5])}")
            return manifest
    except FileNotFoundError:
        raise BackupError(f"{archive}: no such file") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        # gzip.BadGzipFile is an OSError; a truncated stream is an EOFError.
        raise _refuse(archive, f"it is not a complete .tar.gz file ({exc})") from None


def _extract(archive: Path, manifest: Manifest, staging: Path) -> None:
    for db in manifest.databases:
        (staging / db).mkdir()
    with tarfile.open(archive, "r:gz") as tar:
        for index, member in enumerate(tar):
            if index == 0:
                continue  # the manifest
            # Checked again: the file may have changed since check_archive read it.
            _check_member(archive, member, manifest)
            source = tar.extractfile(member)
            assert source is not None
            with (staging / member.name).open("xb") as target:  # "x": a duplicate name fails
                shutil.copyfileobj(source, target, _COPY_CHUNK)


def _move_aside(data_dir: Path) -> Path | None:
    present = [name for name in DATABASES if (data_dir / name).exists()]
    if not present:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = data_dir / f"before-restore-{stamp}"
    suffix = 1
    while True:
        try:
            aside.mkdir()
            break
        except FileExistsError:
            suffix += 1
            aside = data_dir / f"before-restore-{stamp}-{suffix}"
    _give_back(aside, data_dir.stat())
    for name in present:
        (data_dir / name).rename(aside / name)
    return aside


def _stage(archive: Path, manifest: Manifest, data_dir: Path) -> Path:
    """Extract the archive into a new directory inside `data_dir` and check that each database opens."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(data_dir).free
        needed = sum(manifest.files.values())
        if needed > free:
            raise BackupError(
                f"restoring needs {needed >> 20} MiB in {data_dir} but only {free >> 20} MiB are free "
                "(the current data is kept, so both must fit): free some space"
            )
        staging = Path(tempfile.mkdtemp(prefix="restore-", dir=data_dir))
    except OSError as exc:
        raise BackupError(f"cannot use the data directory {data_dir}: {exc.strerror or exc}") from None
    try:
        _extract(archive, manifest, staging)
        try:
            with opened_databases(staging, manifest.databases):
                pass
        except BackupError as exc:
            raise _refuse(archive, f"a database does not open ({exc})") from None
        for db in manifest.databases:
            _give_back(staging / db, data_dir.stat())  # the restored files belong to the data directory's owner
        return staging
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise _refuse(archive, f"it could not be read to the end ({exc})") from None
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BackupError(f"cannot extract {archive} into {data_dir}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def restore_archive(archive: Path, data_dir: Path) -> Path | None:
    """Replace the databases in `data_dir` with the archive's; returns where the previous data was moved (None if
    there was none). The gateway must be stopped. A refused archive changes nothing."""
    try:
        manifest = check_archive(archive)
        _ensure_stopped(data_dir)
        staging = _stage(archive, manifest, data_dir)
    except BackupError as exc:
        raise type(exc)(f"{exc}; the data in {data_dir} was not changed") from None
    try:
        aside = _move_aside(data_dir)
        for db in manifest.databases:
            (staging / db).rename(data_dir / db)
    except OSError as exc:
        raise BackupError(
            f"restore failed while moving directories in {data_dir}: {exc.strerror or exc}; the previous data "
            "is in the before-restore-* directory there: move its store and broker back before starting"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return aside
