"""The SD image's overlay (image-build/rootfs, copied over the image's /) and boot-partition files (image-build/bootfs):
every file read as the tool that uses it will read it, and the units checked by systemd-analyze."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest
import yaml

from tests.image.conftest import BOOTFS, ROOTFS

UNITS = ROOTFS / "etc" / "systemd" / "system"
SCRIPTS = ROOTFS / "usr" / "local" / "lib" / "gateway-image"
HERE_GATEWAY = Path(sys.executable).parent / "gateway"
REPO_UNIT = ROOTFS.parent.parent / "systemd" / "gateway.service"

# trixie's cloud-init 25.1.4-1+deb13u1, /etc/cloud/cloud.cfg: the module lists 90-gateway.cfg trims.
TRIXIE_MODULES = {
    "cloud_init_modules": [
        "seed_random", "bootcmd", "write-files", "growpart", "resizefs", "disk_setup", "mounts", "set_hostname",
        "update_hostname", "update_etc_hosts", "ca-certs", "rsyslog", "users-groups", "ssh",
    ],
    "cloud_config_modules": [
        "snap", "ssh-import-id", "keyboard", "locale", "set-passwords", "grub-dpkg", "apt-pipelining",
        "apt-configure", "ntp", "timezone", "disable-ec2-metadata", "runcmd", "byobu",
    ],
    "cloud_final_modules": [
        "package-update-upgrade-install", "fan", "landscape", "lxd", "write-files-deferred", "puppet", "chef",
        "mcollective", "salt-minion", "reset_rmc", "scripts-vendor", "scripts-per-once", "scripts-per-boot",
        "scripts-per-instance", "scripts-user", "ssh-authkey-fingerprints", "keys-to-console", "install-hotplug",
        "phone-home", "final-message", "power-state-change",
    ],
}  # fmt: skip
# Modules that install packages (from user-data or because something is missing), need the internet, or would redo
# what the image does itself (fstab, growing /).
MUST_NOT_RUN = {
    "package-update-upgrade-install", "apt-configure", "ntp", "snap", "byobu", "ssh-import-id", "rsyslog",
    "lxd", "puppet", "chef", "mcollective", "salt-minion", "landscape", "fan", "phone-home", "mounts", "growpart",
}  # fmt: skip


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat; space-separated values are split), sections merged."""
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, value = line.split("=", 1)
        settings.setdefault(key.strip(), []).extend(value.split())
    return settings


def analyze_verify(*units: Path) -> list[str]:
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60, check=False
    )
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def runnable_copy(unit: Path, directory: Path) -> Path:
    """A copy of unit whose ExecStart= names the script in this repository: on this machine the image's
    /usr/local/lib/gateway-image does not exist, which is systemd-analyze's only complaint about the original."""
    text = unit.read_text()
    exec_lines = re.findall(r"^ExecStart=(/usr/local/lib/gateway-image/(\S+))$", text, flags=re.MULTILINE)
    assert len(exec_lines) == 1, text
    installed, name = exec_lines[0]
    copy = directory / unit.name
    copy.write_text(text.replace(f"ExecStart={installed}", f"ExecStart={SCRIPTS / name}"))
    return copy


# --- fstab ------------------------------------------------------------------------------------------------------------


def fstab_entries() -> list[list[str]]:
    lines = (ROOTFS / "etc" / "fstab").read_text().splitlines()
    return [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_fstab_root_and_boot_partition() -> None:
    entries = {fields[1]: fields for fields in fstab_entries()}
    assert set(entries) == {"/", "/boot/firmware"}
    assert entries["/"] == ["LABEL=gwroot", "/", "ext4", "defaults,noatime,commit=60,x-systemd.growfs", "0", "1"]
    boot = entries["/boot/firmware"]
    assert boot[0] == "LABEL=GWBOOT" and boot[2] == "vfat"
    options = boot[3].split(",")
    assert {"noatime", "nofail", "umask=0077"} <= set(options)
    # Waited for longer than systemd's 90 s: cloud-init and the gateway.toml import need it (the boot test timed out)
    assert "x-systemd.device-timeout=300s" in options
    assert boot[5] == "2"


def test_fstab_has_noatime_everywhere_and_no_swap() -> None:
    entries = fstab_entries()
    assert entries and all("noatime" in fields[3].split(",") for fields in entries)
    assert not [fields for fields in entries if fields[2] == "swap" or "swap" in fields[3]]
    assert not [path for path in ROOTFS.rglob("*") if path.name.endswith(".swap")]  # no swap unit either


def test_systemd_fstab_generator_grows_root_and_does_not_wait_for_the_fat(tmp_path: Path) -> None:
    """This machine's systemd-fstab-generator on the image's fstab: the units it makes at boot."""
    generator = Path("/usr/lib/systemd/system-generators/systemd-fstab-generator")
    if not generator.exists():  # a Debian before the /usr merge
        generator = Path("/lib/systemd/system-generators/systemd-fstab-generator")
    out = tmp_path / "normal"
    out.mkdir()
    env = {
        **os.environ,
        "SYSTEMD_FSTAB": str(ROOTFS / "etc" / "fstab"),
        "SYSTEMD_PROC_CMDLINE": "",
        "SYSTEMD_IN_INITRD": "0",
    }
    result = subprocess.run(
        [str(generator), str(out), str(out), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    growfs = sorted(path.name for path in (out / "-.mount.wants").iterdir())
    assert growfs in (["systemd-growfs-root.service"], ["systemd-growfs@-.service"]), growfs
    # gateway-grow-root.service runs before whichever this systemd uses (trixie's is systemd-growfs-root.service).
    before = unit_settings(UNITS / "gateway-grow-root.service")["Before"]
    assert {"systemd-growfs-root.service", "systemd-growfs@-.service"} <= set(before)
    # nofail: local-fs.target (and so boot) only wants the FAT, it does not require it.
    assert (out / "local-fs.target.wants" / "boot-firmware.mount").exists()
    assert not (out / "local-fs.target.requires" / "boot-firmware.mount").exists()
    assert "Options=defaults,noatime,nofail,umask=0077" in (out / "boot-firmware.mount").read_text().splitlines()
    assert not list(out.rglob("*.swap"))


# --- YAML: cloud-init and netplan -------------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    found = [*ROOTFS.rglob("*.yaml"), *(ROOTFS / "etc" / "cloud" / "cloud.cfg.d").glob("*.cfg")]
    found += [BOOTFS / name for name in ("user-data", "meta-data", "network-config")]
    return sorted(found)


@pytest.mark.parametrize("path", yaml_files(), ids=lambda path: str(path.relative_to(ROOTFS.parent)))
def test_every_yaml_file_parses(path: Path) -> None:
    yaml.safe_load(path.read_text())  # raises on a syntax error


def test_yaml_files_were_found() -> None:
    names = {path.name for path in yaml_files()}
    assert {"10-gateway-ethernet.yaml", "90-gateway.cfg", "network-config", "user-data", "meta-data"} <= names


def test_netplan_files_are_private_and_configure_every_wired_interface() -> None:
    netplan = sorted((ROOTFS / "etc" / "netplan").iterdir())
    assert [path.name for path in netplan] == ["10-gateway-ethernet.yaml"]
    # Their mode, 0600 (netplan warns about files others can read: they may hold Wi-Fi secrets), is set by
    # customize.sh, since git keeps only 0644 and 0755; `make image-test` checks it on the booted image.
    network = yaml.safe_load(netplan[0].read_text())["network"]
    assert network["version"] == 2 and network["renderer"] == "networkd"
    assert "wifis" not in network
    [wired] = network["ethernets"].values()
    assert wired["match"] == {"name": "e*"}
    assert wired["dhcp4"] is True and wired["dhcp6"] is True and wired["optional"] is True


def cloud_cfg() -> dict[str, object]:
    loaded = yaml.safe_load((ROOTFS / "etc" / "cloud" / "cloud.cfg.d" / "90-gateway.cfg").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_cloud_init_reads_imager_files_from_the_boot_partition() -> None:
    cfg = cloud_cfg()
    assert cfg["datasource_list"] == ["NoCloud", "None"]
    assert cfg["datasource"] == {"NoCloud": {"seedfrom": "file:///boot/firmware"}}
    # ds-identify (cloud-init's generator) understands only a one-line flow sequence.
    text = (ROOTFS / "etc" / "cloud" / "cloud.cfg.d" / "90-gateway.cfg").read_text()
    assert re.search(r"^datasource_list: \[NoCloud, None\]$", text, flags=re.MULTILINE)
    assert cfg["users"] == []


@pytest.mark.parametrize("stage", sorted(TRIXIE_MODULES))
def test_cloud_init_modules_install_nothing(stage: str) -> None:
    modules = cloud_cfg()[stage]
    assert isinstance(modules, list) and modules
    assert not set(modules) & MUST_NOT_RUN
    # Only trixie's modules, in trixie's order: the stage runs them as listed.
    assert modules == [module for module in TRIXIE_MODULES[stage] if module in modules]


def test_cloud_init_keeps_what_imager_needs() -> None:
    cfg = cloud_cfg()
    kept = {module for stage in TRIXIE_MODULES for module in cast(list[str], cfg[stage])}
    assert {"users-groups", "ssh", "set_hostname", "set-passwords", "timezone", "keyboard", "locale", "runcmd"} <= kept


def test_cloud_init_local_waits_for_the_boot_partition() -> None:
    drop_in = UNITS / "cloud-init-local.service.d" / "boot-firmware.conf"
    assert unit_settings(drop_in) == {"RequiresMountsFor": ["/boot/firmware"]}


# --- the gateway's default configuration ------------------------------------------------------------------------------


def test_default_gateway_toml_passes_the_gateway_check() -> None:
    config = ROOTFS / "etc" / "gateway" / "gateway.toml"
    result = subprocess.run(
        [str(HERE_GATEWAY), "config", "--check", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout


def test_default_gateway_toml_serves_port_80_and_is_the_documented_example() -> None:
    import tomllib

    config = ROOTFS / "etc" / "gateway" / "gateway.toml"
    assert tomllib.loads(config.read_text()) == {"http": {"port": 80}}
    assert "boot partition" in config.read_text()
    assert (BOOTFS / "gateway.toml.example").read_bytes() == config.read_bytes()
    # No secret in it, and the overlay is owned by root:root: readable by the gateway without a chgrp.
    assert stat.S_IMODE(config.stat().st_mode) == 0o644


# --- units ------------------------------------------------------------------------------------------------------------

OWN_UNITS = ["gateway-grow-root.service", "gateway-import-config.service", "gateway-after-cloud-init.service"]


@pytest.mark.parametrize("name", OWN_UNITS)
def test_unit_verifies(name: str, tmp_path: Path) -> None:
    unit = UNITS / name
    [installed] = unit_settings(unit)["ExecStart"]
    assert analyze_verify(unit) == [f"{name}: Command {installed} is not executable: No such file or directory"]
    assert analyze_verify(runnable_copy(unit, tmp_path)) == []


def test_gateway_service_wants_the_import_through_its_drop_in(tmp_path: Path) -> None:
    settings = unit_settings(UNITS / "gateway.service.d" / "image.conf")
    assert settings == {"Wants": ["gateway-import-config.service"], "After": ["gateway-import-config.service"]}
    # The repository's gateway.service with the image's drop-in and import unit beside it: systemd-analyze reads
    # drop-ins from there, so a clean verify means the drop-in parsed...
    service = tmp_path / "gateway.service"
    service.write_text(REPO_UNIT.read_text().replace("/opt/gateway/venv/bin/gateway ", f"{HERE_GATEWAY} "))
    shutil.copytree(UNITS / "gateway.service.d", tmp_path / "gateway.service.d")
    runnable_copy(UNITS / "gateway-import-config.service", tmp_path)
    assert analyze_verify(service) == []
    # ... as a broken copy of it shows: the same place, now with a complaint.
    broken = tmp_path / "gateway.service.d" / "image.conf"
    text = broken.read_text()
    broken.write_text(text + "NoSuchSetting=1\n")
    line = len(text.splitlines()) + 1
    assert analyze_verify(service) == [f"{broken}:{line}: Unknown key 'NoSuchSetting' in section [Unit], ignoring."]


def test_cloud_init_local_drop_in_verifies_on_a_stand_in_unit(tmp_path: Path) -> None:
    # trixie's cloud-init-local.service is not on this machine: a stand-in with its first lines shows that the
    # drop-in parses and applies.
    (tmp_path / "cloud-init-local.service").write_text(
        "[Unit]\nDescription=stand-in\nDefaultDependencies=no\nBefore=sysinit.target\n\n"
        "[Service]\nType=oneshot\nExecStart=/bin/true\n"
    )
    shutil.copytree(UNITS / "cloud-init-local.service.d", tmp_path / "cloud-init-local.service.d")
    assert analyze_verify(tmp_path / "cloud-init-local.service") == []


def test_grow_root_runs_once_before_systemd_grows_the_file_system() -> None:
    settings = unit_settings(UNITS / "gateway-grow-root.service")
    assert settings["DefaultDependencies"] == ["no"]
    assert "systemd-remount-fs.service" in settings["After"]
    assert "systemd-growfs-root.service" in settings["Before"]
    assert settings["ConditionPathExists"] == ["!/var/lib/gateway-image/grow-root.done"]
    assert "/var/lib/gateway-image/grow-root.done" in (SCRIPTS / "grow_root.py").read_text()
    assert settings["WantedBy"] == ["sysinit.target"]


def test_import_waits_for_the_boot_partition_and_comes_before_the_gateway() -> None:
    settings = unit_settings(UNITS / "gateway-import-config.service")
    assert "/boot/firmware" in settings["RequiresMountsFor"]
    assert settings["ConditionPathExists"] == ["/boot/firmware/gateway.toml"]
    assert settings["Before"] == ["gateway.service"]
    assert settings["Type"] == ["oneshot"]
    assert "[Install]" not in (UNITS / "gateway-import-config.service").read_text()  # gateway.service pulls it in


def test_after_cloud_init_comes_after_cloud_final_without_a_cycle() -> None:
    settings = unit_settings(UNITS / "gateway-after-cloud-init.service")
    assert settings["After"] == ["cloud-final.service"]
    # cloud-final.service is After=multi-user.target: WantedBy=multi-user.target would order that target after this
    # unit, and so after cloud-final, which comes after it.
    assert settings["WantedBy"] == ["cloud-init.target"]


@pytest.mark.parametrize(
    ("link", "unit"),
    [
        ("sysinit.target.wants/gateway-grow-root.service", "gateway-grow-root.service"),
        ("cloud-init.target.wants/gateway-after-cloud-init.service", "gateway-after-cloud-init.service"),
    ],
)
def test_units_are_enabled_by_links_matching_their_install_section(link: str, unit: str) -> None:
    path = UNITS / link
    assert path.is_symlink() and path.resolve() == (UNITS / unit).resolve()
    assert os.readlink(path) == f"../{unit}"  # relative: right both in this tree and on the image
    target = link.split("/", maxsplit=1)[0].removesuffix(".wants")
    assert unit_settings(UNITS / unit)["WantedBy"] == [target]


def test_every_wants_link_resolves() -> None:
    links = [path for path in UNITS.rglob("*") if path.is_symlink()]
    assert len(links) == 2 and all(link.exists() for link in links), links


# --- scripts, modules, limits -----------------------------------------------------------------------------------------


def scripts() -> list[Path]:
    return sorted(SCRIPTS.glob("*.py"))


def test_scripts_are_executable_python3_with_importable_names() -> None:
    assert [path.name for path in scripts()] == ["after_cloud_init.py", "grow_root.py", "import_config.py"]
    for path in scripts():
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path
        assert path.read_text().startswith("#!/usr/bin/python3\n"), path
        assert path.stem.isidentifier(), path


def test_every_unit_runs_one_of_the_scripts() -> None:
    named = {Path(unit_settings(UNITS / name)["ExecStart"][0]).name for name in OWN_UNITS}
    assert named == {path.name for path in scripts()}


def test_scripts_are_ruff_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    files = [str(path) for path in scripts()]
    for command in ([str(ruff), "check", *files], [str(ruff), "format", "--check", *files]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_core_dumps_off_and_serial_drivers_loaded() -> None:
    system = (ROOTFS / "etc" / "systemd" / "system.conf.d" / "gateway-image.conf").read_text().splitlines()
    assert "[Manager]" in system and "DefaultLimitCORE=0" in system
    modules = (ROOTFS / "etc" / "modules-load.d" / "gateway-serial.conf").read_text().splitlines()
    loaded = [line.strip() for line in modules if line.strip() and not line.startswith("#")]
    assert loaded == ["cdc_acm", "usbserial", "ftdi_sio", "cp210x", "ch341", "pl2303"]


# --- boot partition ---------------------------------------------------------------------------------------------------


def test_boot_partition_placeholders_imager_overwrites() -> None:
    assert sorted(path.name for path in BOOTFS.iterdir()) == [
        "README.txt", "gateway.toml.example", "meta-data", "network-config", "user-data",
    ]  # fmt: skip
    user_data = (BOOTFS / "user-data").read_text()
    assert user_data.startswith("#cloud-config\n")
    assert all(line.startswith("#") for line in user_data.splitlines()), "comments only"
    assert yaml.safe_load(user_data) is None
    meta = yaml.safe_load((BOOTFS / "meta-data").read_text())
    assert isinstance(meta["instance-id"], str) and meta["instance-id"]
    network = yaml.safe_load((BOOTFS / "network-config").read_text())
    assert network == {"network": {"version": 2}}


def test_boot_partition_readme_tells_what_goes_there() -> None:
    readme = (BOOTFS / "README.txt").read_text()
    for needle in ("gateway.toml", "gateway.toml.error", "gateway.toml.installed", "user-data", "network-config"):
        assert needle in readme, needle
    assert "Imager" in readme
    assert (BOOTFS / "README.txt").read_bytes().count(b"\r\n") == readme.count("\n")  # CRLF: readable anywhere
