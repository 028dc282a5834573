#!/usr/bin/python3
"""Install a gateway.toml dropped on the boot partition as /etc/gateway/gateway.toml, if the gateway accepts it.

A user without a login edits the configuration from a laptop: gateway.toml on the FAT partition. Before
gateway.service starts, gateway-import-config.service runs this script:

- valid: the file becomes /etc/gateway/gateway.toml (the old one is kept as gateway.toml.previous), and the file on
  the boot partition is renamed gateway.toml.installed, so that a later boot does not install it again over changes
  made on the gateway itself;
- invalid: gateway.toml.error on the boot partition says why, the installed configuration stays as it is, and the
  unit fails (`systemctl --failed`); gateway.service only Wants= it, so the gateway still starts, with the old file.
"""

from __future__ import annotations

import argparse
import grp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GATEWAY = "/opt/gateway/venv/bin/gateway"
GROUP = "gateway"
MODE = 0o640


@dataclass(frozen=True)
class Paths:
    root: Path

    def _at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def boot(self) -> Path:
        return self._at("/boot/firmware")

    @property
    def dropped(self) -> Path:
        return self.boot / "gateway.toml"

    @property
    def installed_marker(self) -> Path:
        return self.boot / "gateway.toml.installed"

    @property
    def error(self) -> Path:
        return self.boot / "gateway.toml.error"

    @property
    def config_dir(self) -> Path:
        return self._at("/etc/gateway")

    @property
    def config(self) -> Path:
        return self.config_dir / "gateway.toml"

    @property
    def previous(self) -> Path:
        return self.config_dir / "gateway.toml.previous"

    def shown(self, path: Path) -> str:
        """path as it is named on the running gateway (without a test's --root)."""
        return "/" + str(path.relative_to(self.root))


def check(gateway: str, candidate: Path) -> tuple[bool, str]:
    """(valid, what the gateway said). Anything but exit 0 or 2 means the check itself did not work."""
    try:
        result = subprocess.run(
            [gateway, "config", "--check", str(candidate)], capture_output=True, text=True, check=False, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"the gateway could not check the file ({gateway}: {error})"
    said = (result.stderr.strip() or result.stdout.strip()).strip()
    if result.returncode == 0:
        return True, said
    if result.returncode == 2:
        return False, said or "the gateway refused the file without saying why"
    return False, f"the gateway could not check the file ({gateway} exited {result.returncode}): {said}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_owner(path: Path) -> None:
    # Root owns it and group gateway reads it (tokens, passwords): the service runs as user gateway. A test tree
    # on a machine without that group keeps root's group.
    try:
        gid = grp.getgrnam(GROUP).gr_gid
    except KeyError:
        return
    os.chown(path, 0, gid)


def write_error(paths: Paths, reason: str) -> None:
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    text = (
        f"gateway.toml was NOT installed ({when}):\n\n"
        f"{reason}\n\n"
        "The previous configuration is still in use: fix the file and restart the gateway (switch it off and on\n"
        "again), or check it on a computer first with `gateway config --check gateway.toml`.\n"
        "This file is deleted once a gateway.toml is installed.\n"
    )
    temporary = paths.error.with_name(paths.error.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, paths.error)


def import_config(paths: Paths, gateway: str) -> int:
    if not paths.dropped.is_file():
        print(f"no {paths.shown(paths.dropped)}: nothing to import")
        return 0
    paths.config_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    # The exact bytes that are checked are the ones installed: a copy next to the target, renamed over it once the
    # gateway accepts it, so that the gateway never reads a half-written or unchecked file.
    fd, name = tempfile.mkstemp(prefix=".gateway.toml.", suffix=".new", dir=paths.config_dir)
    candidate = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(paths.dropped.read_bytes())
            out.flush()
            os.fsync(out.fileno())
        os.chmod(candidate, MODE)
        _set_owner(candidate)
        valid, said = check(gateway, candidate)
        said = said.replace(str(candidate), paths.shown(paths.dropped))
        if not valid:
            write_error(paths, said)
            print(
                f"gateway-import-config: {paths.shown(paths.dropped)} was not installed: {said}. "
                f"{paths.shown(paths.config)} is unchanged and still in use; the reason is in "
                f"{paths.shown(paths.error)} on the boot partition: fix the file there and restart.",
                file=sys.stderr,
            )
            return 1
        if paths.config.exists():
            shutil.copy2(paths.config, paths.previous)
            _set_owner(paths.previous)
        os.replace(candidate, paths.config)
        _fsync_dir(paths.config_dir)
    finally:
        candidate.unlink(missing_ok=True)
    # Renamed, not deleted: the user sees on the laptop that the file was taken, and still has it.
    os.replace(paths.dropped, paths.installed_marker)
    paths.error.unlink(missing_ok=True)
    kept = f" (the one before is {paths.shown(paths.previous)})" if paths.previous.exists() else ""
    print(
        f"installed {paths.shown(paths.dropped)} as {paths.shown(paths.config)}{kept}; "
        f"the boot partition's copy is now {paths.installed_marker.name}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path("/"), help="the system's root directory (tests: a tree)")
    parser.add_argument("--gateway", default=GATEWAY, help="the gateway program that checks the file")
    args = parser.parse_args(argv)
    try:
        return import_config(Paths(args.root.resolve()), args.gateway)
    except OSError as error:
        print(
            f"gateway-import-config: gateway.toml could not be imported: {error}. The configuration in "
            "/etc/gateway is unchanged; check that the boot partition is not read-only or full.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
