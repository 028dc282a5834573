"""Broker benchmark: our gateway's MQTT broker next to Debian's mosquitto, same load, one table.

Run it from the repository root (``make bench`` runs ``python bench/broker.py``)::

    .venv/bin/python bench/broker.py                          # both brokers, every figure
    .venv/bin/python bench/broker.py --only mosquitto --messages 20000
    .venv/bin/python bench/broker.py --scenarios qos0-1to1 idle-conns --repeat 1
    .venv/bin/python bench/broker.py --gateway-cmd '.venv/bin/gateway serve --bind 127.0.0.1 ...'

Both brokers listen on 127.0.0.1 and are driven one after the other by the same load generator:

* publishers: raw-socket MQTT 3.1.1 clients, all in this process on one asyncio loop, with pre-encoded
  PUBLISH packets written many per ``write``; QoS 1 clients keep a window of in-flight packet ids and
  read PUBACKs. (paho tops out near 7,000 msg/s per process and ``mosquitto_pub -l`` measured slower
  than this generator, so neither is used.)
* subscriber: the same raw client in a child process (this script with ``--subscriber``): it counts
  PUBLISH packets, acks QoS 1 ones, and reports its CPU time so the table shows it is not the bottleneck.

A run lasts from the first PUBLISH written to the last one received by the subscriber; each scenario runs
``--repeat`` times per broker (brokers alternating) and the median run is shown. The broker's CPU
time comes from utime+stime in /proc/<pid>/stat, its memory from VmRSS in /proc/<pid>/status. Neither the
generator nor the subscriber shares code with the broker under test. Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PAYLOAD = b'{"t":21.5,"h":40.2,"seq":"000000000000"}'  # 40 bytes
PUBLISHERS_FANIN = 100
QOS1_WINDOW = 32  # in-flight QoS 1 packet ids per publisher
QOS0_BATCH = 256  # PUBLISH packets per write() call
CONNECT_CONCURRENCY = 50
KEEPALIVE_S = 300  # longer than any run: no PINGREQ needed, and not the edge case 0
SUBSCRIBER_IDLE_S = 5.0  # the subscriber gives up this long after its last message
START_TIMEOUT_S = 20.0
SETTLE_S = 1.0
GATEWAY_ARGS = (
    *("-m", "gateway", "serve", "--bind", HOST),
    *("--mqtt-port", "0", "--http-port", "0", "--mqttsn-port", "0", "--ws-port", "0"),
)
LISTENING_RE = re.compile(r"listening\b.*?\bmqtt=(?P<host>\[[^\]]*\]|[^\s:]+):(?P<port>\d+)")

TARGET_QOS0_MSGS = 40_000
TARGET_CPU_US = 25.0
TARGET_IDLE_RSS_MIB = 25.0
TARGET_CONN_KIB = 5.0


class BenchError(Exception):
    """A broker or a run failed in a way worth one clear line to the user."""


# --------------------------------------------------------------------------------------------------
# MQTT 3.1.1, hand-encoded: just the packets the bench needs.


def _varint(n: int) -> bytes:
    if not 0 <= n < 1 << 28:
        raise ValueError(f"remaining length out of range: {n}")
    out = bytearray()
    for _ in range(4):
        n, byte = divmod(n, 128)
        out.append(byte | 0x80 if n else byte)
        if not n:
            break
    return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str) -> bytes:
    body = b"\x00\x04MQTT\x04\x02" + KEEPALIVE_S.to_bytes(2, "big") + _utf8(client_id)  # clean session
    return b"\x10" + _varint(len(body)) + body


def subscribe_packet(packet_id: int, topic_filter: str, qos: int) -> bytes:
    body = packet_id.to_bytes(2, "big") + _utf8(topic_filter) + bytes([qos])
    return b"\x82" + _varint(len(body)) + body


def publish_qos0_packet(topic: str, payload: bytes) -> bytes:
    body = _utf8(topic) + payload
    return b"\x30" + _varint(len(body)) + body


def publish_qos1_prefix(topic: str, payload: bytes) -> bytes:
    """Everything before the packet id of a QoS 1 PUBLISH; the payload follows the id."""
    return b"\x32" + _varint(len(_utf8(topic)) + 2 + len(payload)) + _utf8(topic)


DISCONNECT = b"\xe0\x00"


def split_packets(buf: bytearray) -> tuple[list[tuple[int, int, int]], int]:
    """Complete packets at the start of buf as (first byte, body start, body end), and bytes used."""
    packets: list[tuple[int, int, int]] = []
    pos, size = 0, len(buf)
    while pos + 2 <= size:  # pos grows by >= 2 each turn
        length, shift, i = 0, 0, pos + 1
        while True:
            if i >= size:
                return packets, pos
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise BenchError("malformed remaining length from broker")
        end = i + length
        if end > size:
            break
        packets.append((buf[pos], i, end))
        pos = end
    return packets, pos


async def read_within(reader: asyncio.StreamReader, wait: float, size: int = 1 << 16) -> bytes:
    """What the stream has within `wait` seconds; b"" when nothing came in time, or it ended."""
    if wait <= 0:
        return b""
    try:
        async with asyncio.timeout(wait):
            return await reader.read(size)
    except TimeoutError:
        return b""


def take_publishes(buf: bytearray) -> tuple[list[tuple[int, int]], bytes, int]:
    """The complete PUBLISH packets at the start of `buf`: their payloads' (start, end) offsets in it, the PUBACKs
    its QoS 1 ones need, and how many bytes the complete packets take (the caller deletes them once done)."""
    packets, used = split_packets(buf)
    spans, acks = [], []
    for header, start, end in packets:
        if header >> 4 != 3:
            continue
        payload_at = start + 2 + (buf[start] << 8 | buf[start + 1])
        if header & 0x06:
            acks.append(b"\x40\x02" + bytes(buf[payload_at : payload_at + 2]))
            payload_at += 2
        spans.append((payload_at, end))
    return spans, b"".join(acks), used


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise BenchError("malformed remaining length from broker")
    return first, await reader.readexactly(length)


async def mqtt_connect(port: int, client_id: str, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(connect_packet(client_id))
            first, body = await read_packet(reader)
            if first != 0x20 or len(body) != 2 or body[1] != 0:
                raise BenchError(f"CONNECT {client_id!r} refused: {first:#04x} {body.hex()}")
        except BaseException:
            writer.close()
            raise
    return reader, writer


async def close_clients(writers: Sequence[asyncio.StreamWriter], timeout: float = 5.0) -> None:
    for writer in writers:
        with contextlib.suppress(Exception):
            writer.write(DISCONNECT)
            writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


# --------------------------------------------------------------------------------------------------
# /proc readings and process plumbing.


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def proc_private_kib(pid: int) -> int:
    """Memory only this process uses (USS): RSS less the library pages it shares with others or could drop."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return sum(int(fields[key].split()[0]) for key in ("Private_Clean", "Private_Dirty"))


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, 1 << 20, 65536):
        if target == resource.RLIM_INFINITY or target <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        return target
    return soft


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn (or a call in the child): SIGKILL when the parent dies, even by SIGKILL."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


def mosquitto_binary() -> str:
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def mosquitto_version() -> str:
    try:
        out = subprocess.run([mosquitto_binary(), "-h"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mosquitto unavailable ({exc})"
    return out.splitlines()[0].strip() if out.strip() else "mosquitto version unknown"


def machine_line() -> str:
    model = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model", "model name"):
                model = f"{value.strip()} ({platform.machine()})"
                break
    return f"machine: {model}, nproc={os.cpu_count()}, Python {platform.python_version()}, {mosquitto_version()}"


# --------------------------------------------------------------------------------------------------
# Brokers.


@dataclass
class Broker:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with status {self.proc.returncode}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def get_json(http_port: int, path: str) -> Any:
    """GET a gateway's JSON API on HOST."""
    conn = http.client.HTTPConnection(HOST, http_port, timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def spawn(name: str, cmd: Sequence[str], workdir: Path, brokers: list[Broker]) -> Broker:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only us; we stop the brokers ourselves
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - only prctl() runs in the child
            )
        except OSError as exc:
            raise BenchError(f"cannot start {name} ({shlex.join(cmd)}): {exc}") from exc
    broker = Broker(name, proc, log_path)
    brokers.append(broker)  # registered before any wait, so cleanup always stops it
    return broker


async def wait_accepting(broker: Broker, deadline: float) -> None:
    while time.monotonic() < deadline:
        broker.check_alive()
        try:
            _, writer = await asyncio.open_connection(HOST, broker.port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise BenchError(f"{broker.name} does not accept connections on {HOST}:{broker.port}")


async def start_mosquitto(workdir: Path, brokers: list[Broker]) -> Broker:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    # As root, mosquitto would switch to user mosquitto, and that clears PR_SET_PDEATHSIG.
    stay_root = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"listener {port} {HOST}\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "# the default (1000) would drop QoS 0 and QoS 1 to a subscriber that falls behind\n"
        f"max_queued_messages 1000000\n{stay_root}"
    )
    broker = spawn("mosquitto", [mosquitto_binary(), "-c", str(conf)], workdir, brokers)
    broker.port = port
    await wait_accepting(broker, time.monotonic() + START_TIMEOUT_S)
    return broker


def gateway_command(override: str | None, data_dir: Path) -> list[str]:
    if override:
        return shlex.split(override)
    # The same queue bound as the mosquitto configuration above, so that both brokers are measured on routing,
    # not on how early they give up on a subscriber that falls behind.
    config = data_dir.parent / "gateway.toml"
    config.write_text("[mqtt]\nmax_queued_messages = 1000000\n")
    return [sys.executable, *GATEWAY_ARGS, "--data-dir", str(data_dir), "--config", str(config)]


async def start_gateway(workdir: Path, override: str | None, brokers: list[Broker]) -> Broker:
    data_dir = workdir / "gateway-data"
    data_dir.mkdir()
    # An installed gateway runs from compiled bytecode (pip and Debian compile at install); compiling at import
    # instead, as happens where PYTHONDONTWRITEBYTECODE is set, costs ~3 MB of memory the board never pays.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO_ROOT / "gateway")], check=True)
    broker = spawn("gateway", gateway_command(override, data_dir), workdir, brokers)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = LISTENING_RE.search(broker.log_path.read_text(errors="replace"))
        if match:
            broker.port = int(match["port"])
            await wait_accepting(broker, deadline)
            return broker
        broker.check_alive()
        await asyncio.sleep(0.05)
    raise BenchError(f"gateway printed no 'listening mqtt=host:port' line within {START_TIMEOUT_S:.0f} s")


# --------------------------------------------------------------------------------------------------
# Load: the subscriber (child process) and the publishers (this process).


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    qos: int
    publishers: int

    @property
    def topic_filter(self) -> str:
        return "bench/one/temp" if self.publishers == 1 else "bench/+/temp"

    def topic(self, index: int) -> str:
        return "bench/one/temp" if self.publishers == 1 else f"bench/p{index:03d}/temp"


SCENARIOS = (
    Scenario("qos0-1to1", "QoS 0, 1 -> 1", 0, 1),
    Scenario("qos1-1to1", "QoS 1, 1 -> 1", 1, 1),
    Scenario("qos0-100to1", f"QoS 0, {PUBLISHERS_FANIN} -> 1 bench/+/temp", 0, PUBLISHERS_FANIN),
    Scenario("qos1-100to1", f"QoS 1, {PUBLISHERS_FANIN} -> 1 bench/+/temp", 1, PUBLISHERS_FANIN),
)
IDLE_CONNS = "idle-conns"


async def subscriber_main(spec: dict[str, object]) -> None:
    """Child-process mode: subscribe, print 'ready', count PUBLISHes, print one JSON result line."""
    port, expected, qos = int(str(spec["port"])), int(str(spec["count"])), int(str(spec["qos"]))
    timeout = float(str(spec["timeout"]))
    reader, writer = await mqtt_connect(port, str(spec["client_id"]), 10.0)
    writer.write(subscribe_packet(1, str(spec["filter"]), qos))
    async with asyncio.timeout(10.0):
        first, body = await read_packet(reader)
    if first != 0x90 or body[-1] == 0x80:
        raise BenchError(f"SUBSCRIBE refused: {first:#04x} {body.hex()}")
    print("ready", flush=True)
    cpu0, start = time.process_time(), time.monotonic()
    deadline = start + timeout
    received, first_at, last_at, buf = 0, 0.0, 0.0, bytearray()
    while received < expected:  # every turn reads data or ends the loop
        now = time.monotonic()
        data = await read_within(reader, deadline - now if not received else min(SUBSCRIBER_IDLE_S, deadline - now))
        if not data:
            break
        now = time.monotonic()
        buf += data
        spans, acks, used = take_publishes(buf)
        received += len(spans)
        del buf[:used]
        if acks:
            writer.write(acks)
        if received:
            first_at, last_at = first_at or now, now
    result = {"received": received, "first": first_at, "last": last_at, "cpu": time.process_time() - cpu0}
    print(json.dumps(result), flush=True)
    await close_clients([writer])


class Subscriber:
    """A subscriber child process, seen from the bench: the bench script run again with `--subscriber` and a JSON
    spec. It prints `ready` once subscribed, then one JSON line with what it received."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output: list[str] = []

    @classmethod
    async def spawn(cls, script: str, spec: dict[str, object]) -> Subscriber:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(script).resolve()),
            "--subscriber",
            json.dumps(spec),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return cls(proc)

    @classmethod
    async def start(cls, port: int, scenario: Scenario, count: int, timeout: float) -> Subscriber:
        spec: dict[str, object] = {
            "port": port,
            "filter": scenario.topic_filter,
            "qos": scenario.qos,
            "count": count,
            "timeout": timeout,
            "client_id": f"bench-sub-{scenario.key}",
        }
        return await cls.spawn(__file__, spec)

    async def line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        for _ in range(100):  # skip at most 100 stray lines (warnings) before giving up
            async with asyncio.timeout(timeout):
                raw = await self.proc.stdout.readline()
            if not raw:
                break
            text = raw.decode(errors="replace").strip()
            self.output.append(text)
            if text == "ready" or text.startswith("{"):
                return text
        raise BenchError("subscriber failed:\n" + "\n".join(self.output[-20:]))

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.proc.wait()


@dataclass
class Publisher:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    topic: str
    count: int
    sent: int = 0


async def connect_publishers(port: int, scenario: Scenario, total: int) -> list[Publisher]:
    n = scenario.publishers
    counts = [total // n + (1 if i < total % n else 0) for i in range(n)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(i: int) -> Publisher:
        async with gate:
            reader, writer = await mqtt_connect(port, f"bench-pub-{scenario.key}-{i:03d}", 10.0)
        return Publisher(reader, writer, scenario.topic(i), counts[i])

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    publishers = [r for r in results if isinstance(r, Publisher)]
    errors = [r for r in results if not isinstance(r, Publisher)]
    if errors:
        await close_clients([p.writer for p in publishers])
        raise BenchError(f"{len(errors)} of {n} publishers could not connect: {errors[0]!r}")
    return publishers


async def drive_qos0(pub: Publisher) -> None:
    packet = publish_qos0_packet(pub.topic, PAYLOAD)
    while pub.sent < pub.count:
        batch = min(QOS0_BATCH, pub.count - pub.sent)
        pub.writer.write(packet * batch)
        pub.sent += batch
        await pub.writer.drain()


async def drive_qos1(pub: Publisher) -> None:
    prefix = publish_qos1_prefix(pub.topic, PAYLOAD)
    in_flight: set[int] = set()
    next_id, acked, buf = 1, 0, bytearray()
    while acked < pub.count:  # every turn reads data or raises; the caller bounds the time
        room = min(QOS1_WINDOW - len(in_flight), pub.count - pub.sent)
        if room > 0:
            chunk = []
            for _ in range(room):
                while next_id in in_flight:  # at most QOS1_WINDOW turns
                    next_id = next_id % 0xFFFF + 1
                in_flight.add(next_id)
                chunk.append(prefix + next_id.to_bytes(2, "big") + PAYLOAD)
                next_id = next_id % 0xFFFF + 1
            pub.writer.write(b"".join(chunk))
            pub.sent += room
        data = await pub.reader.read(1 << 16)
        if not data:
            raise BenchError(f"broker closed publisher {pub.topic} after {pub.sent} messages")
        buf += data
        packets, used = split_packets(buf)
        for header, start, end in packets:
            if header == 0xD0:  # PINGRESP is harmless
                continue
            packet_id = int.from_bytes(buf[start:end], "big") if header == 0x40 and end - start == 2 else -1
            if packet_id not in in_flight:
                raise BenchError(f"unexpected packet {header:#04x} {buf[start:end].hex()} to publisher")
            in_flight.discard(packet_id)
            acked += 1
        del buf[:used]


@dataclass
class RunResult:
    sent: int
    delivered: int
    seconds: float
    broker_cpu_s: float
    pub_cpu_s: float
    sub_cpu_s: float

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_msg(self) -> float:
        return self.broker_cpu_s / self.sent * 1e6 if self.sent else 0.0


async def run_scenario(broker: Broker, scenario: Scenario, total: int, timeout: float) -> RunResult:
    broker.check_alive()
    sub = await Subscriber.start(broker.port, scenario, total, timeout)
    publishers: list[Publisher] = []
    try:
        await sub.line(15.0)  # "ready": subscribed
        publishers = await connect_publishers(broker.port, scenario, total)
        drive = drive_qos1 if scenario.qos else drive_qos0
        cpu0, pub_cpu0, t0 = proc_cpu_seconds(broker.pid), time.process_time(), time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(drive(p) for p in publishers))
        except TimeoutError:
            print(f"  {broker.name} {scenario.key}: publishers timed out after {timeout:.0f} s", file=sys.stderr)
        pub_cpu = time.process_time() - pub_cpu0
        report = json.loads(await sub.line(timeout + SUBSCRIBER_IDLE_S + 10.0))
        broker_cpu = proc_cpu_seconds(broker.pid) - cpu0
    finally:
        await close_clients([p.writer for p in publishers])
        await sub.stop()
    return RunResult(
        sent=sum(p.sent for p in publishers),
        delivered=report["received"],
        seconds=report["last"] - t0 if report["received"] else 0.0,
        broker_cpu_s=broker_cpu,
        pub_cpu_s=pub_cpu,
        sub_cpu_s=report["cpu"],
    )


async def rss_with_idle_connections(broker: Broker, n: int) -> tuple[int, int]:
    """VmRSS (KiB) with n connected, idle MQTT clients; also how many actually connected."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(i: int) -> asyncio.StreamWriter:
        async with gate:
            return (await mqtt_connect(broker.port, f"bench-idle-{i:05d}", 10.0))[1]

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    writers = [r for r in results if isinstance(r, asyncio.StreamWriter)]
    try:
        if len(writers) < n:
            error = next(r for r in results if not isinstance(r, asyncio.StreamWriter))
            print(f"  {broker.name}: only {len(writers)} of {n} connected ({error!r})", file=sys.stderr)
        await asyncio.sleep(SETTLE_S)
        broker.check_alive()
        return proc_rss_kib(broker.pid), len(writers)
    finally:
        await close_clients(writers)


# --------------------------------------------------------------------------------------------------
# The table.

Cell = float | str | None


@dataclass
class Row:
    figure: str
    values: dict[str, Cell] = field(default_factory=dict)
    fmt: str = "{:,.0f}"
    target: str = ""
    meets: Callable[[float], bool] | None = None
    ratio: bool = True
    lossy: set[str] = field(default_factory=set)  # brokers whose run lost messages


def fmt_cell(row: Row, name: str) -> str:
    value = row.values.get(name)
    if value is None:
        return "-"
    text = value if isinstance(value, str) else row.fmt.format(value)
    return f"{text} (lossy)" if name in row.lossy else text


def fmt_ratio(row: Row) -> str:
    ours, theirs = row.values.get("gateway"), row.values.get("mosquitto")
    if not row.ratio or not isinstance(ours, float) or not isinstance(theirs, float) or theirs == 0:
        return ""
    return f"{ours / theirs:.2f}x"


def fmt_target(row: Row) -> str:
    ours = row.values.get("gateway")
    if not row.target or row.meets is None or not isinstance(ours, float):
        return row.target
    if "gateway" in row.lossy:
        return f"{row.target}  MISSED (lost messages)"
    return f"{row.target}  {'ok' if row.meets(ours) else 'MISSED'}"


def render(header: str, rows: list[Row]) -> str:
    titles = ["figure", "gateway", "mosquitto", "ratio (gw/mq)", "target (gateway)"]
    cells = [
        [
            r.figure,
            fmt_cell(r, "gateway"),
            fmt_cell(r, "mosquitto"),
            fmt_ratio(r),
            fmt_target(r),
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [titles, *cells]) for i in range(len(titles))]

    def line(parts: list[str]) -> str:
        first = parts[0].ljust(widths[0])
        rest = [p.rjust(w) for p, w in zip(parts[1:4], widths[1:4], strict=True)]
        return "  ".join([first, *rest, parts[4]]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([header, "", line(titles), rule, *(line(c) for c in cells)])


def scenario_rows(scenario: Scenario, results: dict[str, list[RunResult] | str]) -> list[Row]:
    """Figures of the median run (by msg/s) of each broker; delivered/sent add up all runs."""
    qos0 = scenario.qos == 0
    rows = [
        Row(
            f"{scenario.label}: msg/s routed",
            target=f">= {TARGET_QOS0_MSGS:,} msg/s" if qos0 else "",
            meets=(lambda v: v >= TARGET_QOS0_MSGS) if qos0 else None,
        ),
        Row(f"{scenario.label}: delivered/sent, all runs", ratio=False),
        Row(
            f"{scenario.label}: broker CPU µs/msg",
            fmt="{:.1f}",
            target=f"<= {TARGET_CPU_US:.0f} µs",
            meets=lambda v: v <= TARGET_CPU_US,
        ),
        Row(f"{scenario.label}: load CPU pub/sub", ratio=False),
    ]
    for name, runs in results.items():
        if isinstance(runs, str):
            rows[0].values[name] = runs
            continue
        median = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
        rows[0].values[name] = median.rate
        if median.delivered < median.sent:
            rows[0].lossy.add(name)
        rows[1].values[name] = f"{sum(r.delivered for r in runs):,}/{sum(r.sent for r in runs):,}"
        rows[2].values[name] = median.cpu_us_per_msg
        busy = max(median.seconds, 1e-9)
        rows[3].values[name] = f"{median.pub_cpu_s / busy:.0%}/{median.sub_cpu_s / busy:.0%}"
    return rows


def memory_rows(
    idle: dict[str, int], private: dict[str, int], loaded: dict[str, tuple[int, int] | str], n: int
) -> list[Row]:
    idle_row = Row(
        "idle RSS MiB",
        fmt="{:.1f}",
        target=f"<= {TARGET_IDLE_RSS_MIB:.0f} MB",
        meets=lambda v: v <= TARGET_IDLE_RSS_MIB,
    )
    private_row = Row("idle private memory (USS) MiB", fmt="{:.1f}")
    for name, kib in private.items():
        private_row.values[name] = kib / 1024
    loaded_row = Row(f"RSS with {n:,} idle connections MiB", fmt="{:.1f}")
    per_conn = Row(
        "KiB per idle connection",
        fmt="{:.2f}",
        target=f"<= {TARGET_CONN_KIB:.0f} KB",
        meets=lambda v: v <= TARGET_CONN_KIB,
    )
    for name, kib in idle.items():
        idle_row.values[name] = kib / 1024
    for name, value in loaded.items():
        if isinstance(value, str):
            loaded_row.values[name] = value
            continue
        rss, connected = value
        loaded_row.values[name] = rss / 1024 if connected == n else f"{rss / 1024:.1f} ({connected:,} conns)"
        if connected and name in idle:
            per_conn.values[name] = (rss - idle[name]) / connected
    return [idle_row, private_row, loaded_row, per_conn] if loaded else [idle_row, private_row]


# --------------------------------------------------------------------------------------------------
# Main.


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=["gateway", "mosquitto"], help="benchmark one broker only")
    parser.add_argument("--messages", type=int, default=50_000, help="messages per run (default 50,000)")
    parser.add_argument("--connections", type=int, default=1000, help="idle connections (default 1,000)")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=[s.key for s in SCENARIOS] + [IDLE_CONNS],
        default=[s.key for s in SCENARIOS] + [IDLE_CONNS],
        help="subset to run (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario, median reported (default 3)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per run (default 60)")
    parser.add_argument("--gateway-cmd", help="command starting our broker (shlex-split), run from the repo root")
    parser.add_argument("--subscriber", help=argparse.SUPPRESS)  # internal: child-process mode
    args = parser.parse_args(argv)
    if args.messages < PUBLISHERS_FANIN or args.connections < 1 or args.repeat < 1:
        parser.error(f"--messages must be >= {PUBLISHERS_FANIN}, --connections and --repeat >= 1")
    return args


async def start_brokers(args: argparse.Namespace, workdir: Path, brokers: list[Broker]) -> list[Broker]:
    names = [args.only] if args.only else ["gateway", "mosquitto"]
    started = []
    for name in names:
        try:
            if name == "gateway":
                started.append(await start_gateway(workdir, args.gateway_cmd, brokers))
            else:
                started.append(await start_mosquitto(workdir, brokers))
        except BenchError as exc:
            failed = next((b for b in brokers if b.name == name), None)
            tail = f"\n--- {name} output ---\n{failed.log_tail()}\n---" if failed else ""
            print(f"ERROR: {name} did not start: {exc}{tail}", file=sys.stderr)
    for broker in started:
        print(f"{broker.name}: pid {broker.pid}, mqtt {HOST}:{broker.port}", file=sys.stderr)
    return started


async def measure_scenario(
    scenario: Scenario, brokers: list[Broker], args: argparse.Namespace
) -> dict[str, list[RunResult] | str]:
    """args.repeat runs per broker, alternating brokers; "error" for a broker whose run failed."""
    results: dict[str, list[RunResult] | str] = {b.name: [] for b in brokers}
    for attempt in range(1, args.repeat + 1):
        for broker in brokers:
            runs = results[broker.name]
            if isinstance(runs, str):
                continue
            print(f"{broker.name}: {scenario.key} run {attempt}/{args.repeat}", file=sys.stderr)
            try:
                runs.append(await run_scenario(broker, scenario, args.messages, args.timeout))
            except (BenchError, OSError, TimeoutError, ValueError, KeyError) as exc:
                print(f"ERROR: {broker.name} {scenario.key}: {exc!r}", file=sys.stderr)
                if broker.proc.poll() is not None:
                    print(f"--- {broker.name} output ---\n{broker.log_tail()}\n---", file=sys.stderr)
                results[broker.name] = "error"
            await asyncio.sleep(0.5)
    return results


async def bench(args: argparse.Namespace, workdir: Path, brokers: list[Broker]) -> int:
    """Run everything; returns the exit status (1 if a broker failed to start or a run failed)."""
    started = await start_brokers(args, workdir, brokers)
    status = 0 if len(started) == (1 if args.only else 2) else 1
    if not started:
        return 1
    await asyncio.sleep(SETTLE_S)
    idle = {b.name: proc_rss_kib(b.pid) for b in started if b.proc.poll() is None}
    private = {b.name: proc_private_kib(b.pid) for b in started if b.proc.poll() is None}
    loaded: dict[str, tuple[int, int] | str] = {}
    if IDLE_CONNS in args.scenarios:
        for broker in started:
            print(f"{broker.name}: {args.connections:,} idle connections", file=sys.stderr)
            try:
                loaded[broker.name] = await rss_with_idle_connections(broker, args.connections)
            except (BenchError, OSError) as exc:
                print(f"ERROR: {broker.name} idle connections: {exc}", file=sys.stderr)
                loaded[broker.name], status = "error", 1
            await asyncio.sleep(SETTLE_S)
    rows: list[Row] = []
    for scenario in (s for s in SCENARIOS if s.key in args.scenarios):
        results = await measure_scenario(scenario, started, args)
        if any(isinstance(r, str) for r in results.values()):
            status = 1
        rows += scenario_rows(scenario, results)
    rows += memory_rows(idle, private, loaded, args.connections)
    print(render(header_lines(args), rows))
    return status


def header_lines(args: argparse.Namespace) -> str:
    per_publisher = args.messages // PUBLISHERS_FANIN
    return (
        f"{machine_line()}\n"
        f"messages per run: {args.messages:,} for 1 -> 1, {args.messages:,} for {PUBLISHERS_FANIN} -> 1 "
        f"(~{per_publisher:,} per publisher); payload {len(PAYLOAD)} B; QoS 1 window {QOS1_WINDOW} per "
        f"publisher\nmedian of {args.repeat} run(s) per figure; load CPU = busy share of the "
        "bench's publishers/subscriber during the run"
    )


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.subscriber:
        _die_with_parent()()
        asyncio.run(subscriber_main(json.loads(args.subscriber)))
        return 0
    return run_bench(bench, args, "bench-broker-")


def run_bench(
    bench_main: Callable[[argparse.Namespace, Path, list[Broker]], Coroutine[Any, Any, int]],
    args: argparse.Namespace,
    prefix: str,
) -> int:
    """Run a benchmark in a scratch folder; whatever it started is stopped however it ends (Ctrl-C, SIGTERM)."""
    raise_nofile_limit()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    brokers: list[Broker] = []
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return asyncio.run(bench_main(args, workdir, brokers))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for broker in brokers:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
