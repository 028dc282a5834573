"""/metrics formatting and gathering (gateway/http/metrics.py), without a gateway."""

from __future__ import annotations

import math
import re
from dataclasses import fields
from pathlib import Path

from gateway import __version__
from gateway.http.base import Status
from gateway.http.metrics import Metric, dir_bytes, exposition, gather, resident_bytes

# One sample line of the text format 0.0.4: name, optional labels, value.
SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)')


def status(data_dir: Path, **changes: object) -> Status:
    values: dict[str, object] = {f.name: 0 for f in fields(Status)}
    values.update(started_at=1000.0, data_dir=data_dir, min_free_bytes=64 << 20, store_sync_seconds=0.25)
    values.update(changes)
    return Status(**values)  # type: ignore[arg-type]


def parse(text: str) -> dict[str, tuple[str, str, float]]:
    """{name: (type, help, value)}; asserts the layout: HELP, TYPE, then the sample, for every metric."""
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) % 3 == 0
    out = {}
    for i in range(0, len(lines), 3):
        help_line, type_line, sample = lines[i : i + 3]
        match = SAMPLE.fullmatch(sample)
        assert match, sample
        name = match.group(1)
        assert help_line.startswith(f"# HELP {name} ")
        assert type_line in (f"# TYPE {name} counter", f"# TYPE {name} gauge")
        value = match.group(3)
        out[name] = (type_line.rsplit(" ", 1)[1], help_line.split(" ", 3)[3], float(value))
    return out


def test_exposition_layout_and_escaping() -> None:
    text = exposition(
        [
            Metric("a_total", "counter", "Back\\slash and\nnewline.", 3),
            Metric("b", "gauge", "Labels.", 1.5, (("v", 'q"uo\\te\n'),)),
            Metric("c", "gauge", "Not a number.", math.nan),
            Metric("d", "gauge", "Infinite.", -math.inf),
        ]
    )
    assert text.splitlines() == [
        "# HELP gateway_a_total Back\\\\slash and\\nnewline.",
        "# TYPE gateway_a_total counter",
        "gateway_a_total 3",
        "# HELP gateway_b Labels.",
        "# TYPE gateway_b gauge",
        'gateway_b{v="q\\"uo\\\\te\\n"} 1.5',
        "# HELP gateway_c Not a number.",
        "# TYPE gateway_c gauge",
        "gateway_c NaN",
        "# HELP gateway_d Infinite.",
        "# TYPE gateway_d gauge",
        "gateway_d -Inf",
    ]
    assert SAMPLE.fullmatch(text.splitlines()[5])


def test_gather_follows_the_naming_rules(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "000001.sst").write_bytes(b"x" * 1000)
    (tmp_path / "broker.json").write_bytes(b"y" * 24)
    metrics = gather(status(tmp_path, ingest_readings=42, mqtt_clients_connected=3), 2, 7, now=1010.0)
    parsed = parse(exposition(metrics))
    for name, (kind, text, _value) in parsed.items():
        assert name.startswith("gateway_")
        assert text.endswith(".")
        # Counters end in _total; nothing else does. Times are in seconds, sizes in bytes.
        assert (kind == "counter") == name.endswith("_total"), name
        assert not re.search(r"_(ms|milliseconds|kb|mb|mib)(_|$)", name), name
    assert parsed["gateway_ingest_readings_total"][2] == 42
    assert parsed["gateway_mqtt_clients_connected"] == ("gauge", "MQTT clients connected now.", 3)
    assert parsed["gateway_uptime_seconds"][2] == 10.0
    assert parsed["gateway_store_sync_seconds_total"][2] == 0.25
    assert parsed["gateway_http_watchers"][2] == 2
    assert parsed["gateway_http_watch_dropped_total"][2] == 7
    assert parsed["gateway_disk_min_free_bytes"][2] == 64 << 20
    assert parsed["gateway_data_bytes"][2] == 1024
    assert parsed["gateway_disk_free_bytes"][2] > 0
    assert parsed["gateway_disk_size_bytes"][2] >= parsed["gateway_disk_free_bytes"][2]
    assert f'gateway_info{{version="{__version__}"}} 1' in exposition(metrics)
    exposed = [metric.name for metric in metrics]
    assert len(set(exposed)) == len(exposed)


def test_every_number_of_the_status_is_exposed(tmp_path: Path) -> None:
    numbers = {f.name: 1000 + i for i, f in enumerate(fields(Status)) if f.name not in ("data_dir", "started_at")}
    values = {metric.value for metric in gather(status(tmp_path, **numbers), 0, 0)}
    assert [name for name, number in numbers.items() if number not in values] == []


def test_disk_metrics_are_left_out_when_the_data_directory_is_gone(tmp_path: Path) -> None:
    names = {metric.name for metric in gather(status(tmp_path / "missing"), 0, 0)}
    assert "disk_free_bytes" not in names and "data_bytes" not in names
    assert "uptime_seconds" in names


def test_process_figures(tmp_path: Path) -> None:
    rss = resident_bytes()
    assert rss is not None and 1 << 20 < rss < 1 << 40  # Linux has /proc; a Python process holds more than 1 MiB
    assert dir_bytes(tmp_path) == 0
