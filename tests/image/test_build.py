"""What the image build adds to Debian's tree (build.stage_overlay) and the Raspberry Pi Imager entry beside it,
checked without building an image."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from imagebuild import build, imager

from tests.conftest import REPO


def test_the_overlay_carries_the_venv_launcher_the_unit_and_the_systemd_fragments(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "gateway").mkdir(parents=True)
    (site / "gateway" / "__init__.py").write_text("")
    overlay = build.stage_overlay(tmp_path, site)

    launcher = overlay / "opt/gateway/venv/bin/gateway"
    assert launcher.read_text().startswith("#!/opt/gateway/venv/bin/python3\n")
    assert "from gateway.cli import main" in launcher.read_text()
    assert launcher.stat().st_mode & stat.S_IXOTH
    assert (overlay / f"opt/gateway/venv/lib/python{build.PYTHON}/site-packages/gateway/__init__.py").exists()
    unit = overlay / "usr/lib/systemd/system/gateway.service"
    assert unit.read_bytes() == (REPO / "systemd/gateway.service").read_bytes()
    assert "ExecStart=/opt/gateway/venv/bin/gateway serve" in unit.read_text()
    assert (overlay / "usr/lib/sysusers.d/gateway.conf").exists()
    assert (overlay / "etc/systemd/journald.conf.d/gateway.conf").exists()
    assert (overlay / "etc/fstab").read_bytes() == (REPO / "image-build/rootfs/etc/fstab").read_bytes()
    assert (overlay / "opt/gateway/docs/service.md").exists()  # the unit's Documentation=
    # mmdebstrap reads the overlay from inside its user namespace, as an id that owns nothing here
    assert all(path.stat().st_mode & stat.S_IROTH for path in overlay.rglob("*") if not path.is_symlink())


def test_the_imager_entry_declares_cloud_init_and_describes_the_download(tmp_path: Path) -> None:
    image, packed = tmp_path / "g.img", tmp_path / "g.img.xz"
    image.write_bytes(b"\0" * 4096)
    packed.write_bytes(b"xz")
    target = imager.write_entry(image, packed, tmp_path / "g.json", url=None, version="1.2.3")
    [entry] = json.loads(target.read_text())["os_list"]
    assert entry["init_format"] == "cloudinit"  # what makes Imager offer its customisation dialog
    assert entry["url"] == packed.resolve().as_uri()
    assert (entry["extract_size"], entry["image_download_size"]) == (4096, 2)
    assert entry["extract_sha256"] == "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7"
    assert entry["image_download_sha256"] == imager.sha256(packed)
    assert set(entry["devices"]) == {"pi4-64bit", "pi3-64bit"}  # not the Pi 5, which the kernel cannot boot from SD
    assert "1.2.3" in entry["name"]
    hosted = imager.write_entry(image, packed, tmp_path / "h.json", url="https://example.org/g.img.xz", version="1")
    assert json.loads(hosted.read_text())["os_list"][0]["url"] == "https://example.org/g.img.xz"
