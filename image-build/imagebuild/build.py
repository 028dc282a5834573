"""`make image`: the flashable SD image, image-build/out/gateway-<version>-arm64.img.xz, from this repository alone.

On an x86_64 Debian machine, as root, with no loop devices and no mounts:
1. aarch64 wheels of the gateway and its dependencies are fetched and unpacked on the host (no pip under emulation);
2. mmdebstrap builds Debian trixie arm64 into a tarball in a user namespace (arm64 programs run by qemu-user),
   with the venv, the overlay (image-build/rootfs, the systemd unit, hardware/udev) and customize.sh;
3. the tree is split into the FAT boot partition (mkfs.vfat + mcopy) and the ext4 root (mkfs.ext4 -d), which are
   written at their offsets into a file that sfdisk gave a partition table (layout.py);
4. the image is compressed, and the Raspberry Pi Imager OS-list entry (imager.py) is written beside it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

from imagebuild import imager
from imagebuild.layout import BOOT_LABEL, ROOT_LABEL, Layout, MiB, layout, root_size_for

IMAGE_BUILD = Path(__file__).resolve().parent.parent
REPO = IMAGE_BUILD.parent
SUITE = "trixie"
PYTHON = "3.13"  # trixie's python3
VENV = Path("/opt/gateway/venv")
MIRROR = "http://deb.debian.org/debian"
# Debian packages on the image, beyond mmdebstrap's `apt` variant (the Essential set and apt). Recommends are off:
# what a package only recommends and the gateway needs is listed (zstd and busybox for the initramfs, the Wi-Fi
# regulatory database).
# By purpose: boot (the kernel, the Pi's firmware and device trees, the initramfs); the system (systemd-networkd
# through netplan, which Raspberry Pi Imager's network-config is written for, and Wi-Fi); first boot (Imager's
# customisation through cloud-init's NoCloud source, growing the root partition, SSH when a key was given, the
# keyboard layout Imager sets); the gateway's interpreter (its packages come as wheels into /opt/gateway/venv).
PACKAGES = """
    linux-image-arm64 raspi-firmware firmware-brcm80211 wireless-regdb initramfs-tools zstd busybox
    systemd-sysv udev kmod dbus libpam-systemd systemd-resolved systemd-timesyncd netplan.io wpasupplicant iw
    iproute2 iputils-ping procps ca-certificates tzdata sudo less nano dosfstools fdisk
    cloud-init cloud-guest-utils openssh-server console-setup keyboard-configuration
    python3 python3-venv
""".split()  # noqa: SIM905 - a line per purpose reads better than 34 quoted names
# What the build needs on the host; installed when missing.
HOST_PACKAGES = "mmdebstrap qemu-user-static binfmt-support arch-test uidmap mtools dosfstools fdisk e2fsprogs xz-utils"
WHEEL_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64")


class BuildError(Exception):
    """Something the build cannot go on without; the message says what to do."""


def log(message: str) -> None:
    print(f"image: {message}", flush=True)


def run(command: Sequence[str | os.PathLike[str]], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(part) for part in command], check=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def version() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return str(project["version"])


def prepare_host() -> None:
    """Root, the host's tools, arm64 programs runnable through binfmt_misc, and the subordinate ids that
    `mmdebstrap --mode=unshare` maps root's namespace onto."""
    if os.geteuid() != 0:
        raise BuildError("run the image build as root (it installs Debian packages and registers qemu-aarch64)")
    missing = [
        p
        for p in HOST_PACKAGES.split()
        if subprocess.run(["dpkg", "-s", p], check=False, capture_output=True).returncode
    ]
    if missing:
        log(f"installing Debian packages: {' '.join(missing)}")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=_apt_env())
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", binfmt])
    if not (binfmt / "qemu-aarch64").exists():
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    for name in ("/etc/subuid", "/etc/subgid"):
        path = Path(name)
        text = path.read_text() if path.exists() else ""
        if not any(line.startswith("root:") for line in text.splitlines()):
            log(f"adding root:100000:65536 to {name} (mmdebstrap's user namespace)")
            path.write_text(text + "root:100000:65536\n")


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def fetch_wheels(work: Path) -> Path:
    """The gateway and its dependencies as aarch64 CPython 3.13 wheels, unpacked into a site-packages directory."""
    dist, site = work / "dist", work / "site-packages"
    shutil.rmtree(dist, ignore_errors=True)
    shutil.rmtree(site, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "--wheel-dir", dist, REPO], env=_pip_env())
    [wheel] = dist.glob("gateway-*.whl")
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    abis = ["--abi", f"cp{PYTHON.replace('.', '')}", "--abi", "abi3", "--abi", "none"]
    run(
        [
            *pip,
            "install",
            "--no-compile",
            "--only-binary=:all:",
            *("--implementation", "cp", "--python-version", PYTHON, *platforms, *abis),
            *("--target", site, wheel),
        ],
        env=_pip_env(),
    )
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts pointing at this host's Python
    return site


def _pip_env() -> dict[str, str]:
    # This machine's pip settings (extra indexes, local wheel folders) must not choose the image's packages.
    return {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}


def stage_overlay(work: Path, site: Path) -> Path:
    """Everything the build adds to the Debian tree, laid out as it lands under /."""
    overlay = work / "overlay"
    shutil.rmtree(overlay, ignore_errors=True)
    shutil.copytree(IMAGE_BUILD / "rootfs", overlay, symlinks=True)
    venv = overlay / VENV.relative_to("/")
    shutil.copytree(site, venv / "lib" / f"python{PYTHON}" / "site-packages", symlinks=True)
    script = venv / "bin" / "gateway"
    script.parent.mkdir(parents=True)
    script.write_text(f"#!{VENV}/bin/python3\nimport sys\n\nfrom gateway.cli import main\n\nsys.exit(main())\n")
    script.chmod(0o755)
    copies = {
        REPO / "systemd/gateway.service": "usr/lib/systemd/system/gateway.service",
        REPO / "systemd/gateway.sysusers.conf": "usr/lib/sysusers.d/gateway.conf",
        REPO / "systemd/journald.conf.d/gateway.conf": "etc/systemd/journald.conf.d/gateway.conf",
    }
    copies |= {rule: f"etc/udev/rules.d/{rule.name}" for rule in (REPO / "hardware/udev").glob("*.rules")}
    copies |= {doc: f"opt/gateway/docs/{doc.name}" for doc in (REPO / "docs").glob("*.md")}
    for source, target in copies.items():
        (overlay / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, overlay / target)
    shutil.copy2(IMAGE_BUILD / "customize.sh", work / "customize.sh")
    # mmdebstrap reads these from inside its user namespace, as an unprivileged id of this host.
    for path in (work, *work.rglob("*")):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    return overlay


def bootstrap(work: Path, overlay: Path) -> Path:
    """Debian trixie arm64 with the overlay, as a tarball (ownership kept exactly, unlike an unshared directory)."""
    tarball = work / "rootfs.tar"
    divert = (
        'chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && '
        "printf '#!/bin/sh\\nexit 0\\n' > \"$1/usr/sbin/update-initramfs\" && "
        'chmod 755 "$1/usr/sbin/update-initramfs"'
    )
    run(
        [
            "mmdebstrap",
            "--mode=unshare",
            "--variant=apt",
            "--architectures=arm64",
            "--components=main,non-free-firmware",
            "--aptopt=APT::Install-Recommends false",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            f"--include={','.join(PACKAGES)}",
            # The kernel and firmware packages would each rebuild the initramfs under emulation: once, at the end.
            f"--essential-hook={divert}",
            # With pip (Debian's bundled wheel, no download), for in-place updates of the gateway (docs/image.md).
            f'--customize-hook=chroot "$1" python3 -m venv {VENV}',
            f"--customize-hook=sync-in {overlay} /",
            f'--customize-hook=chroot "$1" {VENV}/bin/python3 -m compileall -q -j 0 '
            f"--invalidation-mode checked-hash {VENV}/lib",
            f'--customize-hook={work / "customize.sh"} "$1"',
            SUITE,
            tarball,
            f"deb {MIRROR} {SUITE} main non-free-firmware",
            f"deb {MIRROR} {SUITE}-updates main non-free-firmware",
            f"deb http://security.debian.org/debian-security {SUITE}-security main non-free-firmware",
        ],
        env={key: value for key, value in _pip_env().items() if key != "TMPDIR"},
    )
    return tarball


def unpack(tarball: Path, work: Path) -> tuple[Path, Path]:
    """The root tree and, taken out of it, what goes onto the FAT partition (/boot/firmware's files, then the
    placeholders Raspberry Pi Imager overwrites: image-build/bootfs)."""
    tree, boot = work / "tree", work / "boot"
    for path in (tree, boot):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
    run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", tarball, "-C", tree])
    firmware = tree / "boot" / "firmware"
    for entry in firmware.iterdir():
        shutil.move(entry, boot / entry.name)
    if not (boot / "cmdline.txt").exists():
        raise BuildError("raspi-firmware wrote no cmdline.txt: the initramfs build in customize.sh failed")
    shutil.copytree(IMAGE_BUILD / "bootfs", boot, dirs_exist_ok=True)
    return tree, boot


def tree_bytes(tree: Path) -> int:
    used = run(["du", "-s", "--block-size=1", tree], capture_output=True).stdout.split()[0]
    return int(used)


def make_boot(boot: Path, plan: Layout, work: Path) -> Path:
    fat = work / "boot.vfat"
    fat.unlink(missing_ok=True)
    run(["mkfs.vfat", "-C", "-F", "32", "-n", BOOT_LABEL, fat, str(plan.boot.size // 1024)], stdout=subprocess.DEVNULL)
    # mcopy -b (batch mode) fails with mtools 4.0.32: copy without it.
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    run(["mcopy", "-s", "-m", "-i", fat, *sorted(boot.iterdir()), "::/"], env=env)
    return fat


def make_root(tree: Path, plan: Layout, work: Path) -> Path:
    ext4 = work / "root.ext4"
    ext4.unlink(missing_ok=True)
    # -m 1: 1% reserved for root instead of 5%, which would hold back 1.5 GB of a 32 GB card.
    run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-m", "1", "-d", tree, ext4, f"{plan.root.size // 1024}k"])
    return ext4


def assemble(plan: Layout, fat: Path, ext4: Path, image: Path) -> None:
    image.unlink(missing_ok=True)
    with image.open("wb") as file:
        file.truncate(plan.disk_size)
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", image], input=plan.sfdisk_script().encode())
    for part, source in ((plan.boot, fat), (plan.root, ext4)):
        run(
            [
                "dd",
                f"if={source}",
                f"of={image}",
                "bs=4M",
                f"seek={part.start}",
                "oflag=seek_bytes",
                "conv=notrunc,sparse",
                "status=none",
            ]
        )


def compress(image: Path) -> Path:
    packed = image.with_name(image.name + ".xz")
    packed.unlink(missing_ok=True)
    run(["xz", "--keep", "--threads=0", "-6", image])
    return packed


def human(size: int) -> str:
    return f"{size / MiB:,.0f} MiB" if size < 1024 * MiB else f"{size / 1024 / MiB:,.2f} GiB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make image", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGE_BUILD / "out", help="where the image goes")
    parser.add_argument(
        "--url", help="where the .img.xz will be downloaded from, for the Imager entry (default: a file:// URL)"
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the unpacked tree and partitions")
    args = parser.parse_args(argv)
    started = time.monotonic()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    name = f"gateway-{version()}-arm64"
    try:
        prepare_host()
        work = Path(tempfile.mkdtemp(prefix="gateway-image-", dir="/var/tmp"))
        log(f"fetching aarch64 wheels into {work}")
        site = fetch_wheels(work)
        overlay = stage_overlay(work, site)
        log(f"building Debian {SUITE} arm64 with mmdebstrap (25 minutes or more under emulation)")
        tree, boot = unpack(bootstrap(work, overlay), work)
        disk_id = int.from_bytes(os.urandom(4), "big")
        plan = layout(root_size_for(tree_bytes(tree)), disk_id)
        log(f"partitions: boot {human(plan.boot.size)} at 4 MiB, root {human(plan.root.size)}")
        image = out / f"{name}.img"
        assemble(plan, make_boot(boot, plan, work), make_root(tree, plan, work), image)
        built = time.monotonic()
        log("compressing with xz")
        packed = compress(image)
        entry = imager.write_entry(image, packed, out / f"{name}.json", url=args.url, version=version())
        if not args.keep_work:
            shutil.rmtree(work)
    except (BuildError, subprocess.CalledProcessError) as exc:
        print(f"image: failed: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    print(f"image: {image} ({human(image.stat().st_size)} raw)")
    print(f"image: {packed} ({human(packed.stat().st_size)} with xz, {time.monotonic() - built:.0f} s to compress)")
    print(f"image: {entry} (the Raspberry Pi Imager entry: docs/image.md says how to add it)")
    print(f"image: built in {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
