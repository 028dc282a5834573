"""The SD image's partition layout: where the FAT boot partition and the ext4 root go, as numbers and as the
`sfdisk` script that writes the partition table into a plain file (no loop device, no mount).

Pure arithmetic, no I/O: build.py makes the file systems as separate files and `dd`s them to these offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
SECTOR = 512
# The first partition starts 4 MiB in: SD cards erase in blocks of up to 4 MiB, and a partition aligned to them
# does not make one write straddle two erase blocks (the Raspberry Pi OS images start at 4 MiB for that reason).
ALIGNMENT = 4 * MiB
BOOT_SIZE = 256 * MiB  # firmware, kernel, initramfs and device trees take ~60 MiB: room for two kernels and more
# MBR partition types: the Pi's boot ROM reads FAT32 (LBA) from an MBR partition table on every model; GPT works
# only on the Pi 4 and 5.
FAT32_LBA = "c"
LINUX = "83"
BOOT_LABEL = "GWBOOT"  # FAT labels: at most 11 characters, upper case
ROOT_LABEL = "gwroot"


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes from the start of the disk
    size: int  # bytes
    type: str
    label: str

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class Layout:
    disk_size: int
    disk_id: int
    boot: Partition
    root: Partition

    def sfdisk_script(self) -> str:
        """What `sfdisk FILE` reads to write this MBR partition table (sizes in 512-byte sectors)."""
        lines = ["label: dos", f"label-id: 0x{self.disk_id:08x}", "unit: sectors", ""]
        for part in (self.boot, self.root):
            bootable = ", bootable" if part is self.boot else ""
            lines.append(f"start={part.start // SECTOR}, size={part.size // SECTOR}, type={part.type}{bootable}")
        return "\n".join(lines) + "\n"


def align_up(value: int, alignment: int = ALIGNMENT) -> int:
    return -(-value // alignment) * alignment


def root_size_for(used_bytes: int) -> int:
    """The root partition for a tree of `used_bytes`: a quarter more for ext4's own metadata and the first boot's
    writes (cloud-init, journal, RocksDB's first files), at least 256 MiB free; it grows to the card on first boot."""
    return align_up(max(used_bytes * 5 // 4, used_bytes + 256 * MiB))


def layout(root_bytes: int, disk_id: int, boot_bytes: int = BOOT_SIZE) -> Layout:
    """Boot partition at 4 MiB, root right after it, the disk ending where the root ends (the smallest image to
    download; the root partition is grown on first boot)."""
    if root_bytes <= 0 or boot_bytes <= 0:
        raise ValueError("partition sizes must be positive")
    if not 0 <= disk_id <= 0xFFFFFFFF:
        raise ValueError("an MBR disk identifier is 32 bits")
    boot = Partition(1, ALIGNMENT, align_up(boot_bytes), FAT32_LBA, BOOT_LABEL)
    root = Partition(2, boot.end, align_up(root_bytes), LINUX, ROOT_LABEL)
    return Layout(disk_size=root.end, disk_id=disk_id, boot=boot, root=root)
