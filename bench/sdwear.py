"""SD-card wear benchmark: bytes the gateway writes to storage per stored reading.

Run it from the repository root (it imports bench/broker.py's helpers); about 5 minutes::

    .venv/bin/python bench/sdwear.py
    .venv/bin/python bench/sdwear.py --dir /var/tmp --site-seconds 300 --no-strace
    .venv/bin/python bench/sdwear.py --compare-commit-interval 0    # skip the second gateway

A real gateway (``gateway serve`` with a fresh data directory under ``--dir``, listening on 127.0.0.1 with free
ports) is measured from outside: ``write_bytes`` of ``/proc/<pid>/io`` (bytes the process caused to be sent to the
storage layer: RocksDB's write-ahead log, memtable flushes, compactions, its LOG and MANIFEST files; counted when a
page is dirtied, so an append of a few bytes followed by an fsync counts a whole 4 KiB page), ``syscw`` (write
system calls, any file descriptor) and ``cancelled_write_bytes`` are read before and after each scenario and
divided by the readings the gateway stored in it (``ingest_readings_total`` of ``/api/status``). The gateway's
log goes to a tmpfs (``/dev/shm``), as the SD image's journal is in RAM (``Storage=volatile``), so log lines are
not counted; RocksDB's own LOG file in the data directory is.

Scenarios, one gateway process:

1. idle: nothing connected, ``--idle-seconds`` (60);
2. site: 20 sensors (paho-mqtt clients, MQTT 3.1.1), each publishing one reading
   ``[["<sensor>.temperature", <time_ns>, <value>]]`` at QoS 1 every 2 s, at random phases, for
   ``--site-seconds`` (90): each publish is its own durable (fsynced) write. The fsync/fdatasync/sync_file_range
   calls of this scenario are counted with ``strace -f -c`` attached to the gateway (``--no-strace``: not);
3. batched: 4 clients each publishing 500 messages of 100 readings at QoS 1, up to 10 in flight per client
   (200,000 readings), measured from the first publish to the last PUBACK;
4. the same readings as 3, measured up to ``--settle-seconds`` (20) after the last PUBACK, so that memtable
   flushes and compactions RocksDB does in the background are counted too.

Then, unless ``--compare-commit-interval 0``, scenario 2 again in a second, fresh gateway configured with
``[store] commit_interval = 1.0`` (readings acknowledged within about a second, sharing an fsync).

"new SST bytes" are the sizes of the table files RocksDB reports creating in its LOG files (flushes and
compaction outputs); the rest of write_bytes is mostly the write-ahead log. "du" is the data directory's
allocated size after the scenario (RocksDB preallocates its write-ahead log file), "apparent" the sum of the file
sizes. Projections (per hour, per day, card lifetime) are derived from the measured rate, not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from broker import HOST, START_TIMEOUT_S, BenchError, Broker, get_json, machine_line, run_bench, spawn
from paho.mqtt.enums import CallbackAPIVersion

SITE_SENSORS = 20
SITE_INTERVAL_S = 2.0
BATCH_CLIENTS = 4
BATCH_MESSAGES = 500  # per client
BATCH_READINGS = 100  # per message
BATCH_SERIES = 10  # per client
BATCH_INFLIGHT = 10
CARD_BYTES = 32e9
CARD_PE_CYCLES = 3000
ENDPOINTS_RE = re.compile(r"listening (.*)$", re.MULTILINE)
SST_RE = re.compile(rb'"event": "table_file_creation".*?"file_size": (\d+)')
FLUSH_RE = re.compile(rb'"event": "flush_finished"')
COMPACTION_RE = re.compile(rb'"event": "compaction_finished"')
SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range")


# --------------------------------------------------------------------------------------------------
# Measuring the gateway from outside.


def proc_io(pid: int) -> dict[str, int]:
    fields = (line.split(":", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {key.strip(): int(value) for key, value in fields}


def rocksdb_log_events(data_dir: Path) -> tuple[int, int, int]:
    """New SST bytes, flushes and compactions RocksDB logged so far, both databases (store/, broker/)."""
    sst = flushes = compactions = 0
    for log in data_dir.glob("*/LOG"):
        text = log.read_bytes()
        sst += sum(int(m) for m in SST_RE.findall(text))
        flushes += len(FLUSH_RE.findall(text))
        compactions += len(COMPACTION_RE.findall(text))
    return sst, flushes, compactions


def disk_usage(path: Path) -> tuple[int, int]:
    """(allocated, apparent) bytes of the files under `path`."""
    allocated = apparent = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # RocksDB deletes obsolete files at any time
                st = os.stat(os.path.join(root, name))
                allocated += st.st_blocks * 512
                apparent += st.st_size
    return allocated, apparent


def mount_of(path: Path) -> str:
    """'<device> on <mount point> type <fs> (<options>)' for the file system holding `path`."""
    best: list[str] = []
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        mount = fields[1]
        if (resolved == mount or resolved.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(
            best[1] if best else ""
        ):
            best = fields
    return f"{best[0]} on {best[1]} type {best[2]} ({best[3]})" if best else "unknown"


@dataclass
class Gateway:
    broker: Broker
    data_dir: Path
    mqtt_port: int
    http_port: int


@dataclass
class Snapshot:
    at: float
    io: dict[str, int]
    status: dict[str, Any]
    sst: tuple[int, int, int]

    @classmethod
    def take(cls, gw: Gateway) -> Snapshot:
        status = get_json(gw.http_port, "/api/status")["status"]
        return cls(time.monotonic(), proc_io(gw.broker.pid), status, rocksdb_log_events(gw.data_dir))


@dataclass
class Result:
    name: str
    seconds: float
    readings: int
    write_bytes: int
    cancelled_bytes: int
    syscw: int
    durable_batches: int
    batches: int
    sst_bytes: int
    flushes: int
    compactions: int
    du: tuple[int, int]
    sync_calls: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    acked: int = 0

    @classmethod
    def between(cls, name: str, gw: Gateway, a: Snapshot, b: Snapshot, sent: int = 0, acked: int = 0) -> Result:
        def status(key: str) -> int:
            return int(b.status[key]) - int(a.status[key])

        return cls(
            name=name,
            seconds=b.at - a.at,
            readings=status("ingest_readings_total"),
            write_bytes=b.io["write_bytes"] - a.io["write_bytes"],
            cancelled_bytes=b.io["cancelled_write_bytes"] - a.io["cancelled_write_bytes"],
            syscw=b.io["syscw"] - a.io["syscw"],
            durable_batches=status("store_syncs_total"),
            batches=status("store_batches_total"),
            sst_bytes=b.sst[0] - a.sst[0],
            flushes=b.sst[1] - a.sst[1],
            compactions=b.sst[2] - a.sst[2],
            du=disk_usage(gw.data_dir),
            sent=sent,
            acked=acked,
        )

    @property
    def per_reading(self) -> float | None:
        return self.write_bytes / self.readings if self.readings else None

    @property
    def per_hour(self) -> float:
        return self.write_bytes / self.seconds * 3600


async def start(workdir: Path, logdir: Path, name: str, config: str, brokers: list[Broker]) -> Gateway:
    data_dir = workdir / f"{name}-data"
    data_dir.mkdir()
    config_path = logdir / f"{name}.toml"
    config_path.write_text(config)
    gateway_bin = Path(sys.executable).parent / "gateway"
    command = [str(gateway_bin)] if gateway_bin.exists() else [sys.executable, "-m", "gateway"]
    command += ["serve", "--config", str(config_path), "--data-dir", str(data_dir), "--bind", HOST]
    command += ["--mqtt-port", "0", "--http-port", "0", "--mqttsn-port", "0", "--ws-port", "0"]
    broker = spawn(name, command, logdir, brokers)  # the log (stdout, stderr) on a tmpfs: not counted
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = ENDPOINTS_RE.search(broker.log_path.read_text(errors="replace"))
        if match:
            ports = {k: int(v.rsplit(":", 1)[1]) for k, v in (item.split("=", 1) for item in match[1].split())}
            gw = Gateway(broker, data_dir, ports["mqtt"], ports["http"])
            while time.monotonic() < deadline:  # the HTTP API answers a little after the line
                try:
                    await asyncio.to_thread(get_json, gw.http_port, "/api/status")
                    return gw
                except OSError:
                    await asyncio.sleep(0.1)
        broker.check_alive()
        await asyncio.sleep(0.05)
    raise BenchError(f"{name} did not start within {START_TIMEOUT_S:.0f} s:\n{broker.log_tail()}")


class Strace:
    """`strace -f -c` attached to a process: counts its sync calls until stopped."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            ["strace", "-f", "-c", "-e", "trace=" + ",".join(SYNC_CALLS), "-o", str(out), "-p", str(pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        calls = dict.fromkeys(SYNC_CALLS, 0)
        for line in self.out.read_text().splitlines():
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(fields) >= 5 and fields[-1] in calls:
                calls[fields[-1]] = int(fields[3])
        return calls


# --------------------------------------------------------------------------------------------------
# Load: paho-mqtt clients, each with its network thread.


class Publisher:
    def __init__(self, port: int, client_id: str, inflight: int = 20) -> None:
        self.acked = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.max_inflight_messages_set(inflight)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect(HOST, port, keepalive=300)
        self.client.loop_start()

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_publish(self, _client: Any, _userdata: Any, _mid: int, reason: Any, _props: Any) -> None:
        with self._lock:
            if reason.is_failure:
                self.failed += 1
            else:
                self.acked += 1

    def wait_connected(self) -> None:
        if not self._connected.wait(15):
            raise BenchError("a paho client did not connect within 15 s")

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_publishers(port: int, prefix: str, n: int, inflight: int = 20) -> list[Publisher]:
    publishers = [Publisher(port, f"{prefix}-{i:02d}", inflight) for i in range(n)]
    for p in publishers:
        p.wait_connected()
    return publishers


def wait_acked(publishers: list[Publisher], expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        acked = sum(p.acked for p in publishers)
        if acked >= expected:
            return acked
        time.sleep(0.005)
    return sum(p.acked for p in publishers)


def drive_site(publishers: list[Publisher], seconds: float, seed: int) -> int:
    """Every sensor publishes one reading every SITE_INTERVAL_S at its own random phase; returns publishes sent."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    schedule = sorted(
        (t0 + rng.uniform(0, SITE_INTERVAL_S) + k * SITE_INTERVAL_S, i)
        for i in range(len(publishers))
        for k in range(int(seconds / SITE_INTERVAL_S))
    )
    values = [rng.uniform(15.0, 25.0) for _ in publishers]
    for at, i in schedule:
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        values[i] += rng.gauss(0, 0.05)
        payload = json.dumps([[f"sensor{i:02d}.temperature", time.time_ns(), round(values[i], 2)]]).encode()
        publishers[i].publish("db/append/SITE", payload)
    return len(schedule)


def batch_payloads(client: int, rng: random.Random) -> list[bytes]:
    """BATCH_MESSAGES messages of BATCH_READINGS readings: a data logger's BATCH_SERIES series at 1 s steps,
    ending about now."""
    steps = BATCH_READINGS // BATCH_SERIES
    now_s = time.time_ns() // 1_000_000_000
    first = now_s - BATCH_MESSAGES * steps
    payloads = []
    for m in range(BATCH_MESSAGES):
        rows = [
            [f"logger{client}.s{s}", (first + m * steps + k) * 1_000_000_000, round(rng.uniform(0, 100), 2)]
            for k in range(steps)
            for s in range(BATCH_SERIES)
        ]
        payloads.append(json.dumps(rows).encode())
    return payloads


# --------------------------------------------------------------------------------------------------
# Scenarios.


async def idle(gw: Gateway, seconds: float) -> Result:
    a = await asyncio.to_thread(Snapshot.take, gw)
    await asyncio.sleep(seconds)
    b = await asyncio.to_thread(Snapshot.take, gw)
    return Result.between("1 idle", gw, a, b)


async def site(gw: Gateway, name: str, seconds: float, strace_out: Path | None) -> Result:
    prefix = name.split(maxsplit=1)[0] + "-sensor"
    publishers = await asyncio.to_thread(connect_publishers, gw.mqtt_port, prefix, SITE_SENSORS)
    strace = Strace(gw.broker.pid, strace_out) if strace_out else None
    if strace:
        await asyncio.sleep(1.0)  # attached to every thread by then
    try:
        a = await asyncio.to_thread(Snapshot.take, gw)
        sent = await asyncio.to_thread(drive_site, publishers, seconds, 1)
        acked = await asyncio.to_thread(wait_acked, publishers, sent, 30)
        b = await asyncio.to_thread(Snapshot.take, gw)
    finally:
        calls = strace.stop() if strace else {}
        for p in publishers:
            p.close()
    result = Result.between(name, gw, a, b, sent, acked)
    result.sync_calls = calls
    return result


async def batched(gw: Gateway, settle: float) -> tuple[Result, Result]:
    rng = random.Random(2)
    payloads = [batch_payloads(c, rng) for c in range(BATCH_CLIENTS)]
    publishers = await asyncio.to_thread(connect_publishers, gw.mqtt_port, "logger", BATCH_CLIENTS, BATCH_INFLIGHT)
    sent = BATCH_CLIENTS * BATCH_MESSAGES
    a = await asyncio.to_thread(Snapshot.take, gw)
    for p, messages in zip(publishers, payloads, strict=True):
        for payload in messages:
            p.publish("db/append/BATCH", payload)  # paho queues beyond its in-flight window
    acked = await asyncio.to_thread(wait_acked, publishers, sent, 300)
    b = await asyncio.to_thread(Snapshot.take, gw)
    ran = Result.between("3 batched", gw, a, b, sent * BATCH_READINGS, acked * BATCH_READINGS)  # du: now
    for p in publishers:
        p.close()
    await asyncio.sleep(settle)
    c = await asyncio.to_thread(Snapshot.take, gw)
    settled = Result.between(f"4 batched+{settle:.0f}s", gw, a, c, sent * BATCH_READINGS, acked * BATCH_READINGS)
    return ran, settled


# --------------------------------------------------------------------------------------------------
# Report.


def kib(n: float) -> str:
    return f"{n / 1024:,.1f}"


def render(results: list[Result]) -> str:
    def per(value: float, count: int) -> str:
        return f"{value / count:,.0f}" if count else "-"

    rows: list[tuple[str, list[str]]] = [
        ("duration s", [f"{r.seconds:.1f}" for r in results]),
        ("readings stored (PUBACKed/sent)", [f"{r.readings:,} ({r.acked:,}/{r.sent:,})" for r in results]),
        ("readings/s", [f"{r.readings / r.seconds:,.1f}" for r in results]),
        ("write_bytes KiB", [kib(r.write_bytes) for r in results]),
        ("  of which new SST files KiB", [kib(r.sst_bytes) for r in results]),
        ("  memtable flushes / compactions", [f"{r.flushes} / {r.compactions}" for r in results]),
        ("cancelled_write_bytes KiB", [kib(r.cancelled_bytes) for r in results]),
        ("syscw (write calls, any fd)", [f"{r.syscw:,}" for r in results]),
        ("store batches / durable (synced)", [f"{r.batches:,} / {r.durable_batches:,}" for r in results]),
        (
            "fsync+fdatasync calls (strace)",
            [str(r.sync_calls["fsync"] + r.sync_calls["fdatasync"]) if r.sync_calls else "-" for r in results],
        ),
        (
            "  sync_file_range calls (strace)",
            [str(r.sync_calls["sync_file_range"]) if r.sync_calls else "-" for r in results],
        ),
        ("write_bytes per reading", [per(r.write_bytes, r.readings) for r in results]),
        ("write_bytes per durable batch", [per(r.write_bytes, r.durable_batches) for r in results]),
        (
            "write_bytes per fsync/fdatasync",
            [
                per(r.write_bytes, r.sync_calls["fsync"] + r.sync_calls["fdatasync"]) if r.sync_calls else "-"
                for r in results
            ],
        ),
        ("write_bytes per hour at this rate MiB", [f"{r.per_hour / 2**20:,.2f}" for r in results]),
        ("data dir after: du MiB (apparent)", [f"{r.du[0] / 2**20:.2f} ({r.du[1] / 2**20:.2f})" for r in results]),
    ]
    width = max(len(label) for label, _ in rows)
    col = max(14, *(len(v) for _, values in rows for v in values), *(len(r.name) for r in results))
    lines = [f"{'figure':<{width}}  " + "  ".join(f"{r.name:>{col}}" for r in results)]
    lines.append("-" * len(lines[0]))
    lines += [f"{label:<{width}}  " + "  ".join(f"{v:>{col}}" for v in values) for label, values in rows]
    return "\n".join(lines)


def projections(results: list[Result]) -> str:
    endurance = CARD_BYTES * CARD_PE_CYCLES
    lines = [
        f"derived, not measured: at each rate, per day, and years to write a {CARD_BYTES / 1e9:.0f} GB card "
        f"{CARD_PE_CYCLES:,} times over ({endurance / 1e12:.0f} TB; no write amplification inside the card, "
        "no ext4 journal)"
    ]
    for r in results:
        per_day = r.write_bytes / r.seconds * 86400
        years = endurance / per_day / 365 if per_day else float("inf")
        lines.append(f"  {r.name:<24} {per_day / 1e9:8.3f} GB/day  {years:10,.1f} years")
    return "\n".join(lines)


async def bench_main(args: argparse.Namespace, workdir: Path, brokers: list[Broker]) -> int:
    print(machine_line())
    base = Path(tempfile.mkdtemp(prefix="gateway-sdwear-", dir=args.dir))
    shm = Path("/dev/shm")
    logdir = Path(tempfile.mkdtemp(prefix="gateway-sdwear-", dir=shm if shm.is_dir() else workdir))
    print(f"data directory on {mount_of(base)}; gateway log on {mount_of(logdir)}")
    print(
        f"site: {SITE_SENSORS} sensors x 1 reading every {SITE_INTERVAL_S:g} s, QoS 1, {args.site_seconds:g} s; "
        f"batched: {BATCH_CLIENTS} clients x {BATCH_MESSAGES} messages x {BATCH_READINGS} readings, QoS 1, "
        f"{BATCH_INFLIGHT} in flight per client"
    )
    results: list[Result] = []
    try:
        gw = await start(base, logdir, "gateway", args.config.replace("\\n", "\n"), brokers)
        await asyncio.sleep(args.startup_settle)  # startup writes (OPTIONS, MANIFEST, LOG) are not idle writes
        results.append(await idle(gw, args.idle_seconds))
        strace_out = None if args.no_strace or not shutil.which("strace") else logdir / "strace.txt"
        results.append(await site(gw, "2 site", args.site_seconds, strace_out))
        await asyncio.sleep(2)
        results += await batched(gw, args.settle_seconds)
        gw.broker.stop()
        if args.compare_commit_interval > 0:
            config = f"[store]\ncommit_interval = {args.compare_commit_interval}\n"
            gw2 = await start(base, logdir, "gateway-ci", config, brokers)
            await asyncio.sleep(args.startup_settle)
            name = f"2b site ci={args.compare_commit_interval:g}s"
            results.append(await site(gw2, name, args.site_seconds, None))
            gw2.broker.stop()
    finally:
        for broker in brokers:
            broker.stop()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(logdir, ignore_errors=True)
    print(render(results))
    print(projections([r for r in results if "site" in r.name]))
    lost = [r.name for r in results if r.sent and r.acked != r.sent]
    if lost:
        print(f"NOT every publish was acknowledged in: {', '.join(lost)}")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="/var/tmp", help="where the data directories are made (default /var/tmp)")
    parser.add_argument(
        "--config",
        default="",
        help='configuration of the (first) gateway, "\\n" for newlines, e.g. to measure with an uplink: '
        """'[uplink]\\nurl = "mqtt://127.0.0.1:1883"'""",
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--site-seconds", type=float, default=90.0)
    parser.add_argument("--settle-seconds", type=float, default=20.0)
    parser.add_argument("--startup-settle", type=float, default=5.0, help="wait after start before measuring")
    parser.add_argument(
        "--compare-commit-interval",
        type=float,
        default=1.0,
        help="run the site again in a gateway with this [store] commit_interval (0: not)",
    )
    parser.add_argument("--no-strace", action="store_true", help="do not count sync calls with strace")
    args = parser.parse_args()
    return run_bench(bench_main, args, "gateway-sdwear-bench-")


if __name__ == "__main__":
    sys.exit(main())
