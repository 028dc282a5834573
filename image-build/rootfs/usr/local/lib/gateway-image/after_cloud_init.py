#!/usr/bin/python3
"""After cloud-init has applied Raspberry Pi Imager's settings: switch SSH on only for key logins, and take the Wi-Fi
passphrase off the boot partition.

gateway-after-cloud-init.service runs this after cloud-final.service on every boot; each step does nothing once done.

- SSH is installed but off. If some account has a key in ~/.ssh/authorized_keys (Imager's "allow public-key
  authentication only", or user-data's ssh_authorized_keys), ssh.service is enabled and started. Without a key it
  stays off: a password alone is not enough to open the gateway to the network. Decided once per cloud-init instance,
  so that an owner's `systemctl disable ssh` is not undone by the next boot.
- network-config on the FAT partition holds the Wi-Fi passphrase (as a PSK that opens the network just as well),
  readable by anyone who takes the card out. Once cloud-init has written it into /etc/netplan, it is moved to
  /var/lib/gateway-image/network-config.applied (root only) and cloud-init is told not to render networking again:
  it would otherwise render the placeholder left on the FAT on a later instance and lose the Wi-Fi.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SSH_UNIT_FILE = "/usr/lib/systemd/system/ssh.service"
KEY_TYPES = ("ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-")
WIFIS = re.compile(r"^\s*wifis\s*:")

PLACEHOLDER = """\
# The Wi-Fi settings that Raspberry Pi Imager wrote here were applied on the gateway's first boot and then moved off
# this partition, so that the Wi-Fi password does not stay readable on the card.
# On the gateway they are now in /etc/netplan/50-cloud-init.yaml (in use) and in
# /var/lib/gateway-image/network-config.applied (as Imager wrote them).
# Editing this file changes nothing any more: to change the Wi-Fi, log in and edit /etc/netplan/50-cloud-init.yaml
# (then `sudo netplan apply`), or write the card again with Raspberry Pi Imager.
"""

NETWORK_DISABLED = """\
# Written by gateway-after-cloud-init.service (/usr/local/lib/gateway-image/after_cloud_init.py) once the Wi-Fi
# settings of the boot partition's network-config were applied and moved to
# /var/lib/gateway-image/network-config.applied. The file left on the boot partition is a placeholder: cloud-init
# must not render networking from it, or /etc/netplan/50-cloud-init.yaml would lose the Wi-Fi.
network: {config: disabled}
"""


@dataclass(frozen=True)
class Paths:
    root: Path

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def live(self) -> bool:
        """True on the running system, where systemctl and ssh-keygen may act; False on a test's tree."""
        return self.root == Path("/")

    @property
    def boot_finished(self) -> Path:
        return self.at("/var/lib/cloud/instance/boot-finished")

    @property
    def instance_id(self) -> Path:
        return self.at("/var/lib/cloud/data/instance-id")

    @property
    def state(self) -> Path:
        return self.at("/var/lib/gateway-image")

    @property
    def ssh_decided(self) -> Path:
        return self.state / "ssh-decided"

    @property
    def network_config(self) -> Path:
        return self.at("/boot/firmware/network-config")

    @property
    def applied(self) -> Path:
        return self.state / "network-config.applied"

    @property
    def network_disabled(self) -> Path:
        return self.at("/etc/cloud/cloud.cfg.d/99-gateway-network-applied.cfg")


def has_key(authorized_keys: Path) -> bool:
    """A line of a key type OpenSSH knows, possibly after options (command="...", from=...)."""
    try:
        text = authorized_keys.read_text(errors="replace")
    except OSError:
        return False
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and any(field.startswith(KEY_TYPES) for field in line.split()):
            return True
    return False


def key_files(paths: Paths) -> list[Path]:
    """The authorized_keys files that hold a key, of root and of every account under /home."""
    homes = [paths.at("/root")]
    home = paths.at("/home")
    if home.is_dir():
        homes += sorted(path for path in home.iterdir() if path.is_dir())
    return [home / ".ssh" / "authorized_keys" for home in homes if has_key(home / ".ssh" / "authorized_keys")]


def _symlink(link: Path, target: str) -> None:
    if link.is_symlink() or link.exists():
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def enable_ssh(paths: Paths) -> None:
    # What `systemctl enable ssh` creates (Debian's ssh.service: WantedBy=multi-user.target, Alias=sshd.service),
    # without needing a running systemd, so that it also works on a tree.
    units = paths.at("/etc/systemd/system")
    _symlink(units / "multi-user.target.wants" / "ssh.service", SSH_UNIT_FILE)
    _symlink(units / "sshd.service", SSH_UNIT_FILE)
    if not paths.live:
        return
    # The image ships without host keys so that no two gateways share them; cloud-init's ssh module makes them.
    # If it did not run, sshd would refuse to start (its ExecStartPre= runs `sshd -t`).
    if not any(Path("/etc/ssh").glob("ssh_host_*_key")):
        subprocess.run(["ssh-keygen", "-A"], check=True, timeout=300)
    # --no-block: this unit runs inside the boot transaction; waiting on another start job from it could stall it.
    subprocess.run(["systemctl", "start", "--no-block", "ssh.service"], check=True, timeout=60)


def decide_ssh(paths: Paths) -> str:
    instance = paths.instance_id.read_text().strip() if paths.instance_id.is_file() else ""
    if instance and paths.ssh_decided.is_file() and paths.ssh_decided.read_text().strip() == instance:
        return f"SSH was already decided for cloud-init instance {instance}; left as it is"
    keys = key_files(paths)
    if keys:
        enable_ssh(paths)
        message = "SSH enabled and started: keys in " + ", ".join("/" + str(k.relative_to(paths.root)) for k in keys)
    else:
        message = (
            "SSH stays off: no account has a key in ~/.ssh/authorized_keys (logins by password alone are not "
            "opened to the network). To log in over SSH, write the card again with Raspberry Pi Imager and a "
            "public key, or add one locally and run `systemctl enable --now ssh`."
        )
    # Recorded only once cloud-init has finished: before that, its users and keys may not all exist yet.
    if instance and paths.boot_finished.exists():
        paths.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        paths.ssh_decided.write_text(instance + "\n")
    return message


def holds_wifi(text: str) -> bool:
    return any(WIFIS.match(line.split("#", 1)[0]) for line in text.splitlines())


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def scrub_network_config(paths: Paths) -> str:
    source = paths.network_config
    if not paths.boot_finished.exists():
        return "cloud-init has not finished yet: network-config stays on the boot partition until it has"
    if not source.is_file():
        return "no network-config on the boot partition"
    original = source.read_bytes()
    if not holds_wifi(original.decode(errors="replace")):
        return "the boot partition's network-config holds no Wi-Fi settings: left as it is"
    # In this order, so that a power cut at any point leaves either the secret on the FAT (and this step runs again
    # on the next boot) or a copy on the root file system with cloud-init no longer rendering networking.
    paths.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(paths.applied, original)
    paths.network_disabled.parent.mkdir(parents=True, exist_ok=True)
    paths.network_disabled.write_text(NETWORK_DISABLED)
    # Overwritten in place rather than replaced: a new file would leave the passphrase in the FAT's freed clusters.
    # (The card's wear levelling may still keep an old copy, which no file system call can reach.)
    placeholder = PLACEHOLDER.encode()
    with source.open("r+b") as out:
        out.write(placeholder + b"\n" * max(0, len(original) - len(placeholder)))
        out.flush()
        os.fsync(out.fileno())
        out.truncate(len(placeholder))
        out.flush()
        os.fsync(out.fileno())
    return (
        "Wi-Fi settings moved off the boot partition to /var/lib/gateway-image/network-config.applied; "
        "cloud-init will not render networking again (/etc/cloud/cloud.cfg.d/99-gateway-network-applied.cfg)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path("/"), help="the system's root directory (tests: a tree)")
    args = parser.parse_args(argv)
    paths = Paths(args.root.resolve())
    failed = False
    for step, what in ((decide_ssh, "deciding on SSH"), (scrub_network_config, "moving the Wi-Fi settings")):
        try:
            print(step(paths))
        except (OSError, subprocess.SubprocessError) as error:
            failed = True
            print(
                f"gateway-after-cloud-init: {what} failed: {error}. The next boot tries again; "
                "`journalctl -u gateway-after-cloud-init` shows this message.",
                file=sys.stderr,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
