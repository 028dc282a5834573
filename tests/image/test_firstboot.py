"""The SD image's first-boot scripts (image-build/rootfs/usr/local/lib/gateway-image), run against directory trees
in tmp_path with --root (and this venv's gateway), and the root-partition finder on fake sysfs trees."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.image.conftest import ROOTFS

SCRIPTS = ROOTFS / "usr" / "local" / "lib" / "gateway-image"
HERE_GATEWAY = Path(sys.executable).parent / "gateway"

VALID = "[http]\nport = 8081\n"
INVALID = "[http]\nport = 'x'\n"
OLD = "# the configuration in use\n[http]\nport = 80\n"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"gateway_image_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True, timeout=120, check=False
    )


# --- gateway.toml from the boot partition -----------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "boot" / "firmware").mkdir(parents=True)
    (root / "etc" / "gateway").mkdir(parents=True)
    (root / "etc" / "gateway" / "gateway.toml").write_text(OLD)
    return root


def import_config(root: Path, gateway: Path = HERE_GATEWAY) -> subprocess.CompletedProcess[str]:
    return run("import_config.py", "--root", str(root), "--gateway", str(gateway))


def test_a_valid_file_is_installed_and_the_old_one_kept(tree: Path) -> None:
    boot, etc = tree / "boot" / "firmware", tree / "etc" / "gateway"
    (boot / "gateway.toml").write_text(VALID)
    (boot / "gateway.toml.installed").write_text("an older import\n")
    (boot / "gateway.toml.error").write_text("a stale error\n")
    result = import_config(tree)
    assert result.returncode == 0, result.stderr
    assert (etc / "gateway.toml").read_text() == VALID
    assert stat.S_IMODE((etc / "gateway.toml").stat().st_mode) == 0o640
    assert (etc / "gateway.toml").stat().st_uid == 0
    assert (etc / "gateway.toml.previous").read_text() == OLD
    assert not (boot / "gateway.toml").exists()
    assert (boot / "gateway.toml.installed").read_text() == VALID  # the older one replaced
    assert not (boot / "gateway.toml.error").exists()
    assert sorted(path.name for path in etc.iterdir()) == ["gateway.toml", "gateway.toml.previous"]  # no temporary
    assert "installed /boot/firmware/gateway.toml as /etc/gateway/gateway.toml" in result.stdout


def test_a_first_import_needs_no_previous_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "boot" / "firmware").mkdir(parents=True)
    (root / "boot" / "firmware" / "gateway.toml").write_text(VALID)
    result = import_config(root)
    assert result.returncode == 0, result.stderr
    assert (root / "etc" / "gateway" / "gateway.toml").read_text() == VALID
    assert not (root / "etc" / "gateway" / "gateway.toml.previous").exists()


def test_an_invalid_file_leaves_the_configuration_and_says_why(tree: Path) -> None:
    boot, etc = tree / "boot" / "firmware", tree / "etc" / "gateway"
    (boot / "gateway.toml").write_text(INVALID)
    (boot / "gateway.toml.installed").write_text(VALID)
    result = import_config(tree)
    assert result.returncode != 0
    assert (etc / "gateway.toml").read_text() == OLD  # still in use
    assert sorted(path.name for path in etc.iterdir()) == ["gateway.toml"]  # no previous, no temporary
    assert (boot / "gateway.toml").read_text() == INVALID  # left for the user to fix
    assert (boot / "gateway.toml.installed").read_text() == VALID
    error = (boot / "gateway.toml.error").read_text()
    # The reason names the file as the user knows it, not the copy that was checked.
    assert "gateway: /boot/firmware/gateway.toml: [http] port: expected int, got str 'x'" in error
    assert "the previous configuration is still in use: fix the file and restart" in error.lower()
    assert "NOT installed (" in error and error.split("NOT installed (")[1][:2] == "20"  # the time
    assert "[http] port: expected int" in result.stderr and "gateway.toml.error" in result.stderr


def test_a_gateway_that_cannot_check_installs_nothing(tree: Path) -> None:
    boot = tree / "boot" / "firmware"
    (boot / "gateway.toml").write_text(VALID)
    result = import_config(tree, gateway=tree / "no-such-gateway")
    assert result.returncode != 0
    assert (tree / "etc" / "gateway" / "gateway.toml").read_text() == OLD
    assert "could not check" in (boot / "gateway.toml.error").read_text()


def test_without_a_dropped_file_nothing_changes(tree: Path) -> None:
    result = import_config(tree)
    assert result.returncode == 0 and "nothing to import" in result.stdout
    assert sorted(path.name for path in (tree / "etc" / "gateway").iterdir()) == ["gateway.toml"]
    assert list((tree / "boot" / "firmware").iterdir()) == []


# --- SSH after cloud-init ---------------------------------------------------------------------------------------------

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGatewayTestKeyOnlyForTestsXXXXXXXXXXXXXXXXX user@laptop\n"
WANTS = Path("etc/systemd/system/multi-user.target.wants/ssh.service")


def cloud_init_done(root: Path, instance: str = "iid-imager") -> None:
    (root / "var" / "lib" / "cloud" / "instance").mkdir(parents=True, exist_ok=True)
    (root / "var" / "lib" / "cloud" / "instance" / "boot-finished").write_text("done\n")
    (root / "var" / "lib" / "cloud" / "data").mkdir(parents=True, exist_ok=True)
    (root / "var" / "lib" / "cloud" / "data" / "instance-id").write_text(instance + "\n")


def authorized_keys(root: Path, home: str, text: str) -> None:
    ssh = root / home.lstrip("/") / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text(text)


def after_cloud_init(root: Path) -> subprocess.CompletedProcess[str]:
    return run("after_cloud_init.py", "--root", str(root))


@pytest.mark.parametrize("home", ["/home/pi", "/root"])
def test_ssh_is_enabled_when_an_account_has_a_key(tmp_path: Path, home: str) -> None:
    cloud_init_done(tmp_path)
    authorized_keys(tmp_path, home, "# Imager's key\n" + KEY)
    result = after_cloud_init(tmp_path)
    assert result.returncode == 0, result.stderr
    link = tmp_path / WANTS
    assert link.is_symlink() and os.readlink(link) == "/usr/lib/systemd/system/ssh.service"
    assert os.readlink(tmp_path / "etc/systemd/system/sshd.service") == "/usr/lib/systemd/system/ssh.service"
    assert f"SSH enabled and started: keys in {home}/.ssh/authorized_keys" in result.stdout


@pytest.mark.parametrize("keys", [None, "", "# no key yet\n\n", "not a key at all\n"])
def test_ssh_stays_off_without_a_key(tmp_path: Path, keys: str | None) -> None:
    cloud_init_done(tmp_path)
    (tmp_path / "home" / "pi").mkdir(parents=True)
    if keys is not None:
        authorized_keys(tmp_path, "/home/other", keys)
    result = after_cloud_init(tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / WANTS).is_symlink() and not (tmp_path / "etc/systemd/system/sshd.service").is_symlink()
    assert "SSH stays off" in result.stdout


def test_key_detection(tmp_path: Path) -> None:
    module = load("after_cloud_init")
    path = tmp_path / "authorized_keys"
    path.write_text('no-port-forwarding,command="echo login as pi" ' + KEY)
    assert module.has_key(path)
    path.write_text("# ssh-ed25519 AAAA commented out\n")
    assert not module.has_key(path)
    assert not module.has_key(tmp_path / "missing")


def test_ssh_is_decided_once_per_instance(tmp_path: Path) -> None:
    cloud_init_done(tmp_path, "iid-one")
    authorized_keys(tmp_path, "/home/pi", KEY)
    assert after_cloud_init(tmp_path).returncode == 0
    assert (tmp_path / WANTS).is_symlink()
    (tmp_path / WANTS).unlink()  # the owner's `systemctl disable ssh`
    (tmp_path / "etc/systemd/system/sshd.service").unlink()
    again = after_cloud_init(tmp_path)
    assert again.returncode == 0 and "already decided" in again.stdout
    assert not (tmp_path / WANTS).is_symlink()
    cloud_init_done(tmp_path, "iid-two")  # a new cloud-init instance (the card written again)
    assert after_cloud_init(tmp_path).returncode == 0
    assert (tmp_path / WANTS).is_symlink()


def test_ssh_is_not_recorded_before_cloud_init_has_finished(tmp_path: Path) -> None:
    (tmp_path / "var/lib/cloud/data").mkdir(parents=True)
    (tmp_path / "var/lib/cloud/data/instance-id").write_text("iid-imager\n")
    assert after_cloud_init(tmp_path).returncode == 0
    assert not (tmp_path / WANTS).is_symlink()
    authorized_keys(tmp_path, "/home/pi", KEY)  # cloud-init writes the key later in its run
    cloud_init_done(tmp_path)
    assert after_cloud_init(tmp_path).returncode == 0
    assert (tmp_path / WANTS).is_symlink()


# --- Wi-Fi secrets off the boot partition -----------------------------------------------------------------------------

PSK = "5f2c0e1b7a9d3c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e"
IMAGER_NETWORK_CONFIG = f"""\
network:
  version: 2
  wifis:
    renderer: networkd
    wlan0:
      dhcp4: true
      regulatory-domain: "GB"
      access-points:
        "Sensor Lab":
          password: "{PSK}"
      optional: true
"""


def boot_with_network_config(root: Path, text: str) -> Path:
    boot = root / "boot" / "firmware"
    boot.mkdir(parents=True, exist_ok=True)
    (boot / "network-config").write_text(text)
    return boot / "network-config"


APPLIED = Path("var/lib/gateway-image/network-config.applied")
DISABLED = Path("etc/cloud/cloud.cfg.d/99-gateway-network-applied.cfg")


def test_wifi_settings_stay_until_cloud_init_has_finished(tmp_path: Path) -> None:
    network_config = boot_with_network_config(tmp_path, IMAGER_NETWORK_CONFIG)
    result = after_cloud_init(tmp_path)
    assert result.returncode == 0, result.stderr
    assert network_config.read_text() == IMAGER_NETWORK_CONFIG
    assert not (tmp_path / APPLIED).exists() and not (tmp_path / DISABLED).exists()
    assert "has not finished" in result.stdout


def test_wifi_settings_move_off_the_boot_partition_after_cloud_init(tmp_path: Path) -> None:
    network_config = boot_with_network_config(tmp_path, IMAGER_NETWORK_CONFIG)
    cloud_init_done(tmp_path)
    result = after_cloud_init(tmp_path)
    assert result.returncode == 0, result.stderr
    applied = tmp_path / APPLIED
    assert applied.read_text() == IMAGER_NETWORK_CONFIG
    assert stat.S_IMODE(applied.stat().st_mode) == 0o600
    placeholder = network_config.read_text()
    assert PSK not in placeholder and "Sensor Lab" not in placeholder
    assert all(line.startswith("#") for line in placeholder.splitlines())
    assert yaml.safe_load(placeholder) is None  # cloud-init would read no network settings from it
    assert "/var/lib/gateway-image/network-config.applied" in placeholder
    assert yaml.safe_load((tmp_path / DISABLED).read_text()) == {"network": {"config": "disabled"}}
    # Run again (every boot): nothing more happens, and the applied copy is not overwritten by the placeholder.
    again = after_cloud_init(tmp_path)
    assert again.returncode == 0 and "no Wi-Fi settings" in again.stdout
    assert applied.read_text() == IMAGER_NETWORK_CONFIG and network_config.read_text() == placeholder


def test_a_network_config_without_wifi_is_left_alone(tmp_path: Path) -> None:
    text = "network:\n  version: 2\n  # wifis: a comment only\n  ethernets:\n    eth0:\n      dhcp4: true\n"
    network_config = boot_with_network_config(tmp_path, text)
    cloud_init_done(tmp_path)
    assert after_cloud_init(tmp_path).returncode == 0
    assert network_config.read_text() == text
    assert not (tmp_path / APPLIED).exists() and not (tmp_path / DISABLED).exists()


def test_wifi_detection_ignores_comments() -> None:
    module = load("after_cloud_init")
    assert module.holds_wifi(IMAGER_NETWORK_CONFIG)
    assert module.holds_wifi("wifis:\n  wlan0: {}\n")
    assert not module.holds_wifi("# wifis:\nnetwork:\n  version: 2  # no wifis: here\n")


# --- the root partition -----------------------------------------------------------------------------------------------


def fake_sysfs(sysfs: Path, bus: str, disk: str, partition: str, number: int, major: int, first_minor: int) -> None:
    """/sys as the kernel lays it out: devices/…/block/<disk>/<partition>, with class/block and dev/block links."""
    disk_dir = sysfs / "devices" / bus / "block" / disk
    part_dir = disk_dir / partition
    part_dir.mkdir(parents=True)
    (disk_dir / "dev").write_text(f"{major}:{first_minor}\n")
    (part_dir / "dev").write_text(f"{major}:{first_minor + number}\n")
    (part_dir / "partition").write_text(f"{number}\n")
    for name, target in ((disk, disk_dir), (partition, part_dir)):
        (sysfs / "class" / "block").mkdir(parents=True, exist_ok=True)
        (sysfs / "class" / "block" / name).symlink_to(os.path.relpath(target, sysfs / "class" / "block"))
        (sysfs / "dev" / "block").mkdir(parents=True, exist_ok=True)
        number_of = (target / "dev").read_text().strip()
        (sysfs / "dev" / "block" / number_of).symlink_to(os.path.relpath(target, sysfs / "dev" / "block"))


def mountinfo(source: str, device_number: str) -> str:
    return (
        "22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
        f"28 1 {device_number} / / rw,noatime shared:1 - ext4 {source} rw,commit=60\n"
        "30 28 179:1 / /boot/firmware rw,noatime shared:7 - vfat /dev/mmcblk0p1 rw,umask=0077\n"
    )


DISKS = [
    ("platform/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa", "mmcblk0", "mmcblk0p2", 179, 0, "/dev/mmcblk0"),
    ("pci0000:00/0000:00:04.0/virtio1", "vda", "vda2", 254, 0, "/dev/vda"),
    ("pci0000:00/0000:01:00.0/nvme/nvme0/nvme0n1", "nvme0n1", "nvme0n1p2", 259, 0, "/dev/nvme0n1"),
    ("platform/scb/usb2/2-1/host0/target0:0:0/0:0:0:0", "sda", "sda2", 8, 0, "/dev/sda"),
]


@pytest.mark.parametrize(("bus", "disk", "partition", "major", "minor", "device"), DISKS, ids=[d[2] for d in DISKS])
def test_the_root_partition_and_its_disk_are_found(
    tmp_path: Path, bus: str, disk: str, partition: str, major: int, minor: int, device: str
) -> None:
    grow_root = load("grow_root")
    fake_sysfs(tmp_path, bus, disk, partition, 2, major, minor)
    found = grow_root.find_root_partition(tmp_path, mountinfo(f"/dev/{partition}", f"{major}:{minor + 2}"))
    assert (found.disk, found.number) == (device, 2)
    assert found.growpart_args() == [device, "2"]
    # Through the source's name too, for a sysfs without /sys/dev/block.
    for link in (tmp_path / "dev" / "block").iterdir():
        link.unlink()
    found = grow_root.find_root_partition(tmp_path, mountinfo(f"/dev/{partition}", f"{major}:{minor + 2}"))
    assert (found.disk, found.number) == (device, 2)


def test_a_root_named_dev_root_is_found_by_its_device_number(tmp_path: Path) -> None:
    grow_root = load("grow_root")
    fake_sysfs(tmp_path, "platform/mmc0", "mmcblk0", "mmcblk0p2", 2, 179, 0)
    found = grow_root.find_root_partition(tmp_path, mountinfo("/dev/root", "179:2"))
    assert (found.disk, found.number) == ("/dev/mmcblk0", 2)


def test_the_last_mount_on_root_wins(tmp_path: Path) -> None:
    grow_root = load("grow_root")
    fake_sysfs(tmp_path, "platform/mmc0", "mmcblk0", "mmcblk0p3", 3, 179, 0)
    text = "1 0 0:2 / / rw - rootfs rootfs rw\n" + mountinfo("/dev/mmcblk0p3", "179:3")
    assert grow_root.find_root_partition(tmp_path, text).number == 3


def test_a_whole_disk_or_unknown_root_is_refused_with_a_reason(tmp_path: Path) -> None:
    grow_root = load("grow_root")
    fake_sysfs(tmp_path, "virtio", "vda", "vda1", 1, 254, 0)
    with pytest.raises(grow_root.NotFound, match="not a partition"):
        grow_root.find_root_partition(tmp_path, mountinfo("/dev/vda", "254:0"))
    with pytest.raises(grow_root.NotFound, match="not a block device"):
        grow_root.find_root_partition(tmp_path, mountinfo("server:/export", "0:52"))
    with pytest.raises(grow_root.NotFound, match="nothing is mounted on /"):
        grow_root.find_root_partition(tmp_path, "22 28 0:21 / /proc rw - proc proc rw\n")


@pytest.fixture
def fake_growpart(tmp_path: Path) -> tuple[Path, Path]:
    """A growpart that records its arguments and answers as $GROWPART_EXIT / $GROWPART_SAYS tell it."""
    calls = tmp_path / "calls"
    script = tmp_path / "growpart"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "$GROWPART_SAYS"\nexit "$GROWPART_EXIT"\n')
    script.chmod(0o755)
    return script, calls


@pytest.mark.parametrize(
    ("code", "says", "exit_code", "stamp"),
    [
        (0, "CHANGED: partition=2 start=1056768 old: size=4194304 end=5251072 new: size=60000000", 0, "grown"),
        (1, "NOCHANGE: partition 2 is size 60000000. it cannot be grown", 0, "already full"),
        (2, "FAILED: sfdisk failed", 1, None),
    ],
    ids=["grown", "nochange", "failed"],
)
def test_grow_root_runs_growpart_and_stamps_only_on_success(
    tmp_path: Path, fake_growpart: tuple[Path, Path], code: int, says: str, exit_code: int, stamp: str | None
) -> None:
    growpart, calls = fake_growpart
    sysfs = tmp_path / "sys"
    fake_sysfs(sysfs, "platform/mmc0", "mmcblk0", "mmcblk0p2", 2, 179, 0)
    (tmp_path / "mountinfo").write_text(mountinfo("/dev/mmcblk0p2", "179:2"))
    stamp_file = tmp_path / "var/lib/gateway-image/grow-root.done"
    args = ["--sysfs", str(sysfs), "--mountinfo", str(tmp_path / "mountinfo"), "--growpart", str(growpart)]
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "grow_root.py"), *args, "--stamp", str(stamp_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "GROWPART_EXIT": str(code), "GROWPART_SAYS": says},
    )
    assert result.returncode == exit_code, result.stderr
    assert calls.read_text() == "/dev/mmcblk0 2\n"
    if stamp is None:
        assert not stamp_file.exists()
        assert "the next boot tries again" in result.stderr and "FAILED: sfdisk failed" in result.stderr
    else:
        assert stamp_file.read_text() == f"/dev/mmcblk0 2 {stamp}\n"
