#!/usr/bin/python3
"""Grow the partition that holds / to the end of its disk, once, on the first boot.

The image is written small; the card it lands on is larger. This script only moves the partition's end (`growpart`);
systemd-growfs-root.service, which fstab's x-systemd.growfs asks for and gateway-grow-root.service runs before, then
grows the ext4 into it. A stamp file makes later boots skip the work (ConditionPathExists=! in the unit).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

STAMP = Path("/var/lib/gateway-image/grow-root.done")


class NotFound(Exception):
    """The root partition or its disk cannot be found: the message says why, for the journal."""


@dataclass(frozen=True)
class RootPartition:
    disk: str  # /dev/mmcblk0
    number: int  # 2
    partition: str  # mmcblk0p2 (for messages)

    def growpart_args(self) -> list[str]:
        return [self.disk, str(self.number)]


@dataclass(frozen=True)
class Mount:
    device_number: str  # "179:2", field 3 of mountinfo
    source: str  # "/dev/mmcblk0p2", after the " - " separator


def root_mount(mountinfo: str, mount_point: str = "/") -> Mount:
    """The mount at mount_point in /proc/self/mountinfo's format (proc(5)); the last one wins, as it hides the
    earlier ones."""
    found: Mount | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 10 or " - " not in line:
            continue
        after = line.split(" - ", 1)[1].split()
        if fields[4] == mount_point and len(after) >= 2:
            found = Mount(device_number=fields[2], source=after[1])
    if found is None:
        raise NotFound(f"nothing is mounted on {mount_point} according to the mount table")
    return found


def _block_dir(sysfs: Path, mount: Mount) -> Path:
    # The device number is exact even when the mount table names the source /dev/root (a kernel's root= without an
    # initramfs) or a by-label link; the source's name is the fallback for a sysfs without /sys/dev/block.
    candidates = [sysfs / "dev" / "block" / mount.device_number]
    if mount.source.startswith("/dev/"):
        candidates.append(sysfs / "class" / "block" / Path(mount.source).name)
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    raise NotFound(
        f"/ is mounted from {mount.source} (device {mount.device_number}), which is not a block device in "
        f"{sysfs}: a root on the network or in RAM has no partition to grow"
    )


def find_root_partition(sysfs: Path, mountinfo: str) -> RootPartition:
    """The disk and partition number holding /, from a sysfs tree and mountinfo text (pure: tests use fake ones)."""
    mount = root_mount(mountinfo)
    block = _block_dir(sysfs, mount)
    number_file = block / "partition"
    if not number_file.is_file():
        raise NotFound(
            f"/ is on {block.name}, a whole disk or a device-mapper device, not a partition: nothing to grow"
        )
    number = int(number_file.read_text().strip())
    disk = block.parent
    # A partition's directory sits inside its disk's (…/block/mmcblk0/mmcblk0p2): the disk has a dev file and no
    # partition file of its own.
    if not (disk / "dev").is_file() or (disk / "partition").exists():
        raise NotFound(f"the disk that holds partition {block.name} cannot be found in {sysfs}")
    return RootPartition(disk=f"/dev/{disk.name}", number=number, partition=block.name)


def grow(partition: RootPartition, growpart: str) -> bool:
    """Run growpart; True when it grew the partition, False when it was already as large as it can be."""
    command = [growpart, *partition.growpart_args()]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    except FileNotFoundError as error:
        raise NotFound(f"{growpart} is missing (package cloud-guest-utils): {error}") from error
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 0:
        print(f"grew {partition.partition} to the end of {partition.disk}: {output}")
        return True
    if result.returncode == 1 and "NOCHANGE" in output:
        print(f"{partition.partition} already fills {partition.disk}: {output}")
        return False
    raise NotFound(f"`{' '.join(command)}` failed (exit {result.returncode}): {output}")


def write_stamp(stamp: Path, text: str) -> None:
    # Root's only: the same directory later keeps the Wi-Fi settings taken off the boot partition.
    stamp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sysfs", type=Path, default=Path("/sys"))
    parser.add_argument("--mountinfo", type=Path, default=Path("/proc/self/mountinfo"))
    parser.add_argument("--growpart", default="growpart")
    parser.add_argument("--stamp", type=Path, default=STAMP)
    args = parser.parse_args(argv)
    try:
        partition = find_root_partition(args.sysfs, args.mountinfo.read_text())
        grew = grow(partition, args.growpart)
    except (NotFound, OSError, ValueError, subprocess.TimeoutExpired) as error:
        # No stamp: the next boot tries again. The file system keeps its size meanwhile, so the gateway still runs.
        print(
            f"gateway-grow-root: the root partition was not grown: {error}. The gateway works with the image's "
            "size; the next boot tries again (`journalctl -b -u gateway-grow-root` shows this message).",
            file=sys.stderr,
        )
        return 1
    write_stamp(args.stamp, f"{partition.disk} {partition.number} {'grown' if grew else 'already full'}\n")
    return 0


if __name__ == "__main__":
    # systemd gives early-boot units no TMPDIR; growpart's scratch files belong in /run, since /tmp on the root
    # file system may be hidden by a tmpfs mounted later.
    os.environ.setdefault("TMPDIR", "/run")
    sys.exit(main())
