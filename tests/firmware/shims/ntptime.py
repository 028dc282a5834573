"""`ntptime` under CPython: the host's clock is already right, so settime() only records that it was asked."""

from __future__ import annotations

import os
from pathlib import Path

host = "pool.ntp.org"


def settime() -> None:
    record = os.environ.get("FIRMWARE_NTP_FILE")
    if record:
        with Path(record).open("a") as f:
            f.write(host + "\n")
