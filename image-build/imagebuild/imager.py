"""The Raspberry Pi Imager OS-list entry shipped beside the image.

Imager offers its customisation dialog (host name, user and SSH key, Wi-Fi, time zone, keyboard) only for images
whose entry declares how to pass the settings: `"init_format": "cloudinit"` makes it write cloud-init's `user-data`,
`meta-data` and `network-config` onto the FAT partition, which the image's cloud-init reads on first boot
(image-build/rootfs/etc/cloud/cloud.cfg.d). A user adds the JSON file in Imager (App Options, Content Repository,
"Use custom file"), or hosts it with the image and passes its URL with `rpi-imager --repo URL`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

# Imager's device tags: a Pi Zero 2 W and a 3B+ are "pi3" boards; 64-bit only (rocksdict has no armv7 wheels). No
# Pi 5: Debian's kernel has no driver for its SD controller (hardware/README.md), so Imager should not offer it.
DEVICES = ("pi4-64bit", "pi3-64bit")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def entry(
    *, version: str, url: str, extract_size: int, extract_sha256: str, download_size: int, download_sha256: str
) -> dict[str, Any]:
    return {
        "os_list": [
            {
                "name": f"Edge gateway {version} (64-bit)",
                "description": "MQTT broker, MQTT-SN gateway and time-series store on Debian trixie; "
                "open http://<host name>.local/ once it has booted",
                "url": url,
                "release_date": datetime.date.today().isoformat(),
                "extract_size": extract_size,
                "extract_sha256": extract_sha256,
                "image_download_size": download_size,
                "image_download_sha256": download_sha256,
                "init_format": "cloudinit",
                "devices": list(DEVICES),
            }
        ]
    }


def write_entry(image: Path, packed: Path, target: Path, *, url: str | None, version: str) -> Path:
    """Writes the entry for `packed` (the .img.xz) to `target`; `url` is where users will download it from."""
    document = entry(
        version=version,
        url=url or packed.resolve().as_uri(),
        extract_size=image.stat().st_size,
        extract_sha256=sha256(image),
        download_size=packed.stat().st_size,
        download_sha256=sha256(packed),
    )
    target.write_text(json.dumps(document, indent=2) + "\n")
    return target
