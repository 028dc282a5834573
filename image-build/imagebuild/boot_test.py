"""`make image-test`: proof that the SD image works, by booting it under QEMU as a user would after Raspberry Pi
Imager wrote it.

A copy of the image is enlarged (so that the first boot's partition growth runs), Imager-style cloud-init files
(host name testgw, a user with a fresh SSH key, a Wi-Fi network) and a gateway.toml go onto its FAT partition with
mtools, and its own kernel, initramfs and command line boot under `qemu-system-aarch64 -M virt -cpu cortex-a53
-smp 2 -m 512` with user-mode networking. Once the gateway answers on the forwarded HTTP port, readings published
over the forwarded MQTT port are read back over HTTP, and SSH (on only because a key was given) shows the host
name, the key, the grown root partition and the gateway running under its sandboxed unit. The last line printed
is the boot-to-ready time; any failure exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt  # the test venv's (make image-test); the build itself needs no paho
from paho.mqtt.enums import CallbackAPIVersion

from imagebuild.build import IMAGE_BUILD
from imagebuild.layout import MiB

HOST_NAME = "testgw"
USER = "tester"
TOKEN = "boot-test-token"
PSK = "5ec0de" * 10 + "c0de"  # 64 hex digits, as Imager writes a Wi-Fi passphrase
GROWTH = 1024 * MiB  # added to the image copy: the root partition must grow by it on first boot
READY_TIMEOUT = 900.0  # seconds: a first boot under software emulation, cloud-init included
USER_DATA = """#cloud-config
# As Raspberry Pi Imager writes it for an image with "init_format": "cloudinit".
hostname: {host}
manage_etc_hosts: true
users:
- name: {user}
  groups: users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo
  shell: /bin/bash
  lock_passwd: true
  ssh_authorized_keys:
  - {key}
  sudo: ALL=(ALL) NOPASSWD:ALL
ssh_pwauth: false
timezone: Europe/Berlin
keyboard:
  model: pc105
  layout: "de"
"""
NETWORK_CONFIG = """network:
  version: 2
  wifis:
    renderer: networkd
    wlan0:
      dhcp4: true
      optional: true
      regulatory-domain: "DE"
      access-points:
        "boot test":
          password: "{psk}"
"""
META_DATA = "instance-id: {host}-boot-test\n"
GATEWAY_TOML = f"""# Dropped on the boot partition, as a user would from a laptop.
[http]
port = 80
token = "{TOKEN}"
"""


class BootTestFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def boot_offset(image: Path) -> int:
    table = json.loads(subprocess.run(["sfdisk", "--json", image], check=True, capture_output=True).stdout)
    partitions = table["partitiontable"]["partitions"]
    return int(partitions[0]["start"]) * 512


def mtools(image: Path, offset: int, *args: str) -> str:
    """An mtools command on the FAT partition inside `image`, addressed as `::`."""
    command, *rest = args
    result = subprocess.run(
        [command, "-i", f"{image}@@{offset}", *rest],
        check=True,
        capture_output=True,
        text=True,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    )
    return result.stdout


def prepare(image: Path, work: Path) -> tuple[Path, Path, Path, str, Path, int]:
    """The enlarged copy with Imager's files on it, its kernel and initramfs, the command line, the SSH key."""
    disk = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", image, disk], check=True)
    with disk.open("r+b") as file:
        file.truncate(image.stat().st_size + GROWTH)
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "boot-test", "-f", key], check=True)
    public = (work / "id_ed25519.pub").read_text().strip()
    offset = boot_offset(disk)
    files = {
        "user-data": USER_DATA.format(host=HOST_NAME, user=USER, key=public),
        "meta-data": META_DATA.format(host=HOST_NAME),
        "network-config": NETWORK_CONFIG.format(psk=PSK),
        "gateway.toml": GATEWAY_TOML,
    }
    for name, text in files.items():
        (work / name).write_text(text)
        mtools(disk, offset, "mcopy", "-o", str(work / name), f"::/{name}")
    listing = mtools(disk, offset, "mdir", "-b", "::/")
    names = [Path(line.strip()).name for line in listing.splitlines()]
    kernel = next(name for name in names if name.startswith("vmlinuz-"))
    initrd = next(name for name in names if name.startswith("initrd.img-"))
    for name in (kernel, initrd, "cmdline.txt"):
        mtools(disk, offset, "mcopy", "-o", f"::/{name}", str(work / name))
    # The Pi's command line, with QEMU's serial console instead of the Pi's, and `ds=nocloud` as Imager adds it.
    words = [w for w in (work / "cmdline.txt").read_text().split() if not w.startswith("console=")]
    cmdline = " ".join(["console=ttyAMA0", *words, "ds=nocloud"])
    return disk, work / kernel, work / initrd, cmdline, key, offset


def qemu_command(
    disk: Path, kernel: Path, initrd: Path, cmdline: str, ports: dict[str, int], console: Path
) -> list[str]:
    forwards = ",".join(f"hostfwd=tcp:127.0.0.1:{ports[name]}-:{guest}" for name, guest in GUEST_PORTS.items())
    return [
        "qemu-system-aarch64",
        "-M", "virt",
        "-cpu", "cortex-a53",
        "-smp", "2",
        "-m", "512",
        "-nographic",
        "-no-reboot",
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", cmdline,
        "-drive", f"file={disk},format=raw,if=virtio",
        "-netdev", f"user,id=net0,{forwards}",
        "-device", "virtio-net-pci,netdev=net0,romfile=",  # no PXE boot ROM: the kernel is given
        "-serial", f"file:{console}",
        "-monitor", "none",
    ]  # fmt: skip


GUEST_PORTS = {"mqtt": 1883, "ws": 8083, "http": 80, "ssh": 22}


def http(port: int, path: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(what: str, check: Callable[[], bool], timeout: float, qemu: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if qemu.poll() is not None:
            raise BootTestFailed(f"QEMU exited ({qemu.returncode}) while waiting for {what}")
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        time.sleep(2)
    raise BootTestFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def publish(port: int, readings: list[list[Any]], transport: Literal["tcp", "websockets"]) -> None:
    """One QoS 1 publish of `readings` to db/append/BOOTTEST, over TCP or over WebSocket, waiting for its PUBACK
    (the gateway's word that they are stored)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"boot-test-{transport}", transport=transport)
    if transport == "websockets":
        client.ws_set_options(path="/mqtt")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        info = client.publish("db/append/BOOTTEST", json.dumps(readings), qos=1)
        info.wait_for_publish(timeout=30)
        if not info.is_published():
            raise BootTestFailed(f"the gateway did not acknowledge a QoS 1 publish over {transport} within 30 s")
    finally:
        client.loop_stop()
        client.disconnect()


def publish_and_read_back(ports: dict[str, int]) -> int:
    now = time.time_ns()
    readings = [["boot.temperature", now + i, 20.0 + i] for i in range(10)]
    publish(ports["mqtt"], readings[:8], "tcp")
    publish(ports["ws"], readings[8:], "websockets")  # MQTT over WebSocket, as a browser dashboard would
    query = urllib.parse.quote("SELECT name, time, value FROM BOOTTEST")
    status, answer = http(ports["http"], f"/db/query?q={query}&format=json")
    rows = answer.get("data", {}).get("rows", []) if isinstance(answer, dict) else []
    if status != 200 or [row[2] for row in rows] != [r[2] for r in readings]:
        raise BootTestFailed(f"readings not read back over HTTP: {status} {answer}")
    return len(rows)


def ssh(port: int, key: Path, command: str, timeout: float = 120) -> str:
    options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    result = subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), *options, "-o", "ConnectTimeout=20", f"{USER}@127.0.0.1", command],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode:
        raise BootTestFailed(f"ssh {command!r} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def ssh_answers(port: int, key: Path) -> bool:
    try:
        ssh(port, key, "true")
    except (BootTestFailed, subprocess.TimeoutExpired):
        return False
    return True


def check_system(ports: dict[str, int], key: Path, image_size: int) -> dict[str, str]:
    script = "; ".join(
        [
            # first, wait for the boot to finish: SSH comes up before cloud-init's last stage and the unit after it
            "systemctl is-system-running --wait >/dev/null",
            "hostname",
            "cat ~/.ssh/authorized_keys",
            "lsblk -bndo SIZE $(findmnt -nvo SOURCE /)",
            "systemctl is-active gateway",
            "systemctl show gateway -p User --value",
            # the Wi-Fi passphrase must be gone from the FAT partition after first boot
            "sudo grep -c " + shlex.quote(PSK) + " /boot/firmware/network-config || true",
            "sudo cat /etc/gateway/gateway.toml | grep -c " + shlex.quote(TOKEN),
            "sudo ls /boot/firmware | paste -sd' ' -",
            "stat -c %a /etc/netplan/10-gateway-ethernet.yaml",
            # trixie's udevadm has `verify` (systemd 253+), which the build machine's may lack
            "udevadm verify --resolve-names=never /etc/udev/rules.d/90-gateway-radio.rules >/dev/null 2>&1 && echo ok"
            " || echo rejected",
            "systemctl --failed --no-legend --plain | cut -d' ' -f1 | paste -sd, -",
        ]
    )
    lines = ssh(ports["ssh"], key, script, timeout=600).splitlines()
    facts = {
        "hostname": lines[0],
        "key": lines[1],
        "root_bytes": lines[2],
        "gateway": lines[3],
        "user": lines[4],
        "psk_on_fat": lines[5],
        "token_lines": lines[6],
        "boot_files": lines[7],
        "netplan_mode": lines[8],
        "udev_rule": lines[9],
        "failed_units": lines[10] if len(lines) > 10 else "",
    }
    public = (key.parent / "id_ed25519.pub").read_text().strip()
    problems = []
    if facts["hostname"] != HOST_NAME:
        problems.append(f"host name is {facts['hostname']!r}, not {HOST_NAME!r} from user-data")
    if facts["key"].strip() != public:
        problems.append("the authorized key is not the one in user-data")
    if int(facts["root_bytes"]) < image_size:
        problems.append(f"the root partition did not grow ({facts['root_bytes']} bytes)")
    if facts["gateway"] != "active" or facts["user"] != "gateway":
        problems.append(f"gateway.service: {facts['gateway']}, user {facts['user']!r}")
    if facts["token_lines"] != "1":
        problems.append("the gateway.toml from the boot partition was not installed as /etc/gateway/gateway.toml")
    if facts["netplan_mode"] != "600":
        problems.append(f"/etc/netplan/10-gateway-ethernet.yaml has mode {facts['netplan_mode']}, not 600")
    if facts["udev_rule"] != "ok":
        problems.append("udevadm verify rejects hardware/udev/90-gateway-radio.rules")
    if facts["psk_on_fat"] != "0":
        problems.append("the Wi-Fi passphrase is still in network-config on the FAT partition")
    if facts["failed_units"]:
        problems.append(f"failed units: {facts['failed_units']}")
    if problems:
        raise BootTestFailed("; ".join(problems))
    return facts


def newest_image() -> Path:
    images = sorted((IMAGE_BUILD / "out").glob("gateway-*-arm64.img"), key=lambda p: p.stat().st_mtime)
    if not images:
        raise BootTestFailed("no image in image-build/out: run `make image` first")
    return images[-1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make image-test", description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="the raw .img (default: the newest in image-build/out)")
    parser.add_argument("--keep", action="store_true", help="keep the disk copy and the console log")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gateway-boot-test-", dir="/var/tmp"))
    console = work / "console.log"
    qemu: subprocess.Popen[bytes] | None = None
    try:
        image = args.image or newest_image()
        disk, kernel, initrd, cmdline, key, _ = prepare(image, work)
        ports = {name: free_port() for name in GUEST_PORTS}
        print(f"boot-test: booting {image.name} (console: {console})", flush=True)
        started = time.monotonic()
        qemu = subprocess.Popen(qemu_command(disk, kernel, initrd, cmdline, ports, console))
        wait_for("the gateway's HTTP API", lambda: http(ports["http"], "/api/status")[0] == 200, READY_TIMEOUT, qemu)
        ready = time.monotonic() - started
        print(f"boot-test: the gateway answers HTTP after {ready:.0f} s", flush=True)
        count = publish_and_read_back(ports)
        print(f"boot-test: {count} readings published over MQTT (TCP, WebSocket), read back over HTTP", flush=True)
        status = http(ports["http"], "/api/status")[1]
        if status.get("name") != HOST_NAME:
            raise BootTestFailed(f"the gateway calls itself {status.get('name')!r}, not the host name {HOST_NAME!r}")
        wait_for("SSH", lambda: ssh_answers(ports["ssh"], key), 300, qemu)
        facts = check_system(ports, key, image.stat().st_size)
        for name, value in facts.items():
            print(f"boot-test: {name}: {value}")
    except (BootTestFailed, subprocess.SubprocessError, OSError) as exc:
        print(f"boot-test: FAILED: {exc}", file=sys.stderr)
        if console.exists():
            print("boot-test: the console's last lines:", file=sys.stderr)
            print("\n".join(console.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
        return 1
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"boot-test: boot to ready: {ready:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
