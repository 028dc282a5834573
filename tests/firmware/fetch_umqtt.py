"""Fetches umqtt.simple, the MQTT client the MQTT sample uses on the board, from PyPI (micropython-umqtt.simple
1.3.4, micropython-lib's code) into the virtual environment (.venv/firmware/), checked against its SHA-256.

pip cannot install it: it is an sdist for MicroPython's old upip, without setup.py or pyproject.toml, so pip
stops at "does not appear to be a Python project". upip itself fetched these archives straight from PyPI, and so
does this (the Makefile runs it before the tests)."""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "1.3.4"
URL = (
    "https://files.pythonhosted.org/packages/bd/cf/697e3418b2f44222b3e848078b1e33ee76aedca9b6c2430ca1b1aec1ce1d/"
    f"micropython-umqtt.simple-{VERSION}.tar.gz"
)
SHA256 = "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"
# Beside the test dependencies pip installed: made and removed with them, and out of the linters' way.
TARGET = Path(sys.prefix) / "firmware" / f"umqtt-simple-{VERSION}" / "umqtt" / "simple.py"


def main() -> int:
    if TARGET.exists():
        return 0
    with urllib.request.urlopen(URL, timeout=60) as response:
        archive = response.read()
    digest = hashlib.sha256(archive).hexdigest()
    if digest != SHA256:
        print(f"{URL}: SHA-256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile(f"micropython-umqtt.simple-{VERSION}/umqtt/simple.py")
        assert member is not None
        source = member.read()
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_bytes(source)
    print(f"umqtt.simple {VERSION} -> {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
