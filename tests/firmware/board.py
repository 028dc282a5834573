"""A board under CPython for a sample's main.py: a flash directory laid out as `mpremote cp` leaves it (lib/ with
the shared library and umqtt.simple, the sample's main.py and config.py), and boots of it, one process each
(run_main.py), through deep sleep."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO, Gateway
from tests.firmware import fetch_umqtt

SAMPLES = REPO / "firmware-samples"
LIB = SAMPLES / "lib"
HERE = Path(__file__).resolve().parent
UMQTT = fetch_umqtt.TARGET


def umqtt_source() -> Path:
    assert UMQTT.exists(), (
        f"{UMQTT} is missing: the MQTT sample's client, umqtt.simple from PyPI, is fetched by `make test` "
        "(or: .venv/bin/python tests/firmware/fetch_umqtt.py)"
    )
    return UMQTT


@dataclass
class Boot:
    returncode: int
    output: str
    sleep_ms: int | None  # what machine.deepsleep() was asked for; None if main.py ended otherwise

    def __str__(self) -> str:
        return f"exit {self.returncode}, deep sleep {self.sleep_ms} ms:\n{self.output}"


class Board:
    def __init__(
        self, root: Path, sample: str, config: dict[str, Any], *, board: str = "esp32", umqtt: bool = False
    ) -> None:
        self.flash = root / f"flash-{sample}-{board}"
        self.board = board
        self.env: dict[str, str] = {}
        (self.flash / "lib").mkdir(parents=True)
        for source in LIB.glob("*.py"):
            shutil.copy(source, self.flash / "lib" / source.name)
        shutil.copy(SAMPLES / sample / "main.py", self.flash / "main.py")
        if umqtt:
            (self.flash / "lib" / "umqtt").mkdir()
            shutil.copy(umqtt_source(), self.flash / "lib" / "umqtt" / "simple.py")
        # The sample's own config.py, with the test's settings after it, as a user edits it on the board.
        text = (SAMPLES / sample / "config.py").read_text() + "\n# The test's settings\n"
        text += "".join(f"{name} = {value!r}\n" for name, value in config.items())
        (self.flash / "config.py").write_text(text)

    def boot(self, timeout: float = 40.0, pass_fds: tuple[int, ...] = (), **env: str) -> Boot:
        sleep_file = self.flash.parent / f"{self.flash.name}.sleep"
        sleep_file.unlink(missing_ok=True)
        environment = {
            **os.environ,
            "FIRMWARE_FLASH": str(self.flash),
            "FIRMWARE_BOARD": self.board,
            "FIRMWARE_SLEEP_FILE": str(sleep_file),
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.env,
            **env,
        }
        done = subprocess.run(
            [sys.executable, str(HERE / "run_main.py")],
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            pass_fds=pass_fds,
        )
        sleep_ms = int(sleep_file.read_text()) if sleep_file.exists() else None
        return Boot(done.returncode, done.stdout + done.stderr, sleep_ms)

    def wake(self, **env: str) -> Boot:
        """A boot that must end in deep sleep, as every wake of a battery sample does."""
        boot = self.boot(40.0, (), **env)
        assert boot.returncode == 0 and boot.sleep_ms is not None, f"the board did not go to deep sleep: {boot}"
        assert "Traceback" not in boot.output, str(boot)
        return boot

    def spool(self) -> list[list[Any]]:
        path = self.flash / "spool.ndjson"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def rtc_state(self) -> dict[str, Any]:
        path = self.flash / (".rtc-memory" if self.board == "esp32" else "state.json")
        return json.loads(path.read_bytes() or b"{}") if path.exists() else {}


def query(gateway: Gateway, sql: str) -> list[list[Any]]:
    url = f"{gateway.http_url}/db/query?" + urllib.parse.urlencode({"q": sql})
    with urllib.request.urlopen(url, timeout=10) as response:
        rows: list[list[Any]] = json.loads(response.read())["data"]["rows"]
        return rows
