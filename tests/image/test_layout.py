"""The SD image's partition table and assembly (image-build/imagebuild/layout.py, build.assemble), on small real
file systems: what sfdisk, mtools and debugfs read back from the assembled file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from imagebuild import build
from imagebuild.layout import ALIGNMENT, BOOT_LABEL, ROOT_LABEL, SECTOR, MiB, align_up, layout, root_size_for


def test_partitions_are_aligned_to_4_mib_and_follow_each_other() -> None:
    plan = layout(root_bytes=700 * MiB + 1, disk_id=0x1234ABCD)
    assert plan.boot.start == ALIGNMENT == 4 * MiB
    assert plan.root.start == plan.boot.end
    assert plan.root.size == 704 * MiB  # rounded up to the next 4 MiB
    assert plan.disk_size == plan.root.end
    assert all(part.start % ALIGNMENT == 0 and part.size % ALIGNMENT == 0 for part in (plan.boot, plan.root))


def test_the_sfdisk_script_is_an_mbr_with_a_bootable_fat32_and_a_linux_partition() -> None:
    plan = layout(root_bytes=64 * MiB, disk_id=0xDEADBEEF, boot_bytes=32 * MiB)
    lines = plan.sfdisk_script().splitlines()
    assert lines[:3] == ["label: dos", "label-id: 0xdeadbeef", "unit: sectors"]
    assert lines[-2:] == [
        f"start={4 * MiB // SECTOR}, size={32 * MiB // SECTOR}, type=c, bootable",
        f"start={36 * MiB // SECTOR}, size={64 * MiB // SECTOR}, type=83",
    ]


def test_the_root_keeps_room_beyond_what_the_tree_uses() -> None:
    assert root_size_for(100 * MiB) == align_up(356 * MiB)  # small trees: 256 MiB free at least
    assert root_size_for(2048 * MiB) == 2560 * MiB  # large ones: a quarter more
    with pytest.raises(ValueError, match="positive"):
        layout(root_bytes=0, disk_id=1)
    with pytest.raises(ValueError, match="32 bits"):
        layout(root_bytes=MiB, disk_id=1 << 32)


def test_an_assembled_image_reads_back_as_its_two_file_systems(tmp_path: Path) -> None:
    boot, tree = tmp_path / "boot", tmp_path / "tree"
    boot.mkdir()
    (boot / "cmdline.txt").write_text("root=LABEL=gwroot rootwait\n")
    (boot / "overlays").mkdir()
    (boot / "overlays" / "README").write_text("device tree overlays\n")
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("gateway\n")
    plan = layout(root_bytes=16 * MiB, disk_id=0x0BADCAFE, boot_bytes=40 * MiB)
    image = tmp_path / "disk.img"
    build.assemble(plan, build.make_boot(boot, plan, tmp_path), build.make_root(tree, plan, tmp_path), image)

    assert image.stat().st_size == plan.disk_size
    table = json.loads(subprocess.run(["sfdisk", "--json", image], check=True, capture_output=True).stdout)
    table = table["partitiontable"]
    assert (table["label"], table["id"]) == ("dos", "0x0badcafe")
    starts = [(p["start"] * SECTOR, p["size"] * SECTOR, p["type"]) for p in table["partitions"]]
    assert starts == [(plan.boot.start, plan.boot.size, "c"), (plan.root.start, plan.root.size, "83")]

    fat = f"{image}@@{plan.boot.start}"
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    copied = subprocess.run(["mtype", "-i", fat, "::/overlays/README"], check=True, capture_output=True, env=env)
    assert copied.stdout == b"device tree overlays\n"
    label = subprocess.run(["mlabel", "-s", "-i", fat, "::"], check=True, capture_output=True, text=True, env=env)
    assert BOOT_LABEL in label.stdout

    root = tmp_path / "root-back.ext4"
    subprocess.run(
        ["dd", f"if={image}", f"of={root}", "bs=1M", f"skip={plan.root.start // MiB}", "status=none"], check=True
    )
    hostname = subprocess.run(["debugfs", "-R", "cat /etc/hostname", root], check=True, capture_output=True)
    assert hostname.stdout == b"gateway\n"
    probe = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", root], check=True, capture_output=True, text=True)
    assert probe.stdout.strip() == ROOT_LABEL
