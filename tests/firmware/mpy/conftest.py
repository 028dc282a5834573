"""The MicroPython-compatible tests in this folder also run under CPython, as plain pytest tests: with
firmware-samples/lib on the path (where the board has /lib), in a directory of their own (the board's flash)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[3] / "firmware-samples" / "lib"
for folder in (str(LIB), str(Path(__file__).resolve().parent)):
    if folder not in sys.path:
        sys.path.insert(0, folder)


@pytest.fixture(autouse=True)
def _in_flash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
