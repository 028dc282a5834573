"""Ingest benchmark: readings stored per second by the gateway, next to the stack it replaces, and query latency.

Run it from the repository root, as ``bench/broker.py`` is run (it imports that script's helpers)::

    .venv/bin/python bench/ingest.py                              # everything, both stacks
    .venv/bin/python bench/ingest.py --only gateway --messages 20000
    .venv/bin/python bench/ingest.py --scenarios qos1 queries
    .venv/bin/python bench/ingest.py --only gateway --gateway-cmd \\
        '.venv/bin/python -m cProfile -o /tmp/gateway.prof -m gateway serve --bind 127.0.0.1 \\
         --mqtt-port 0 --http-port 0 --data-dir /tmp/gw-prof'

Two stacks, driven one after the other by the same load generator (``bench/broker.py``'s raw asyncio MQTT 3.1.1
clients, 100 of them, all in this process) publishing to ``db/append/<TABLE>``:

* gateway: ``python -m gateway serve``; its publish hook stores each message in RocksDB (QoS 1: fsynced before
  the PUBACK). A run ends when the gateway's HTTP API shows every reading stored, polled once the publishers
  are done: first a cheap ``select count(*) from <TABLE> where time >= <last second>`` until the last readings
  of every client are there, then ``select count(*) from <TABLE>``, which must answer the full count (a full
  count scans every reading, ~0.3 s for 50,000 here: polling it alone would slow the gateway down). The end
  time is when the last readings were seen (see ``wait_stored``).
* traditional: Debian's mosquitto plus one paho-mqtt subscriber process (this script with ``--subscriber``)
  subscribed to ``db/append/#``, which parses each message into a RocksDB WriteBatch (rocksdict; key: table,
  name, big-endian time) and has a writer thread write whatever batches it holds at the moment, then sync the
  WAL once for them if any came at QoS 1. A run ends when that subscriber has stored the last reading (it
  reports its count and the time on stdout).

A run lasts from the first PUBLISH written to the last reading stored. Readings are spread over 1,000 series
(10 per client) with distinct times, so every reading is one row. After the ingest scenarios, the gateway is
loaded with query data (1,000 series x 100 readings; one day at 1 Hz; one year at one reading per 10 minutes)
and each query is sent 5 times over HTTP; its median latency is reported, as measured by this client. RSS is
the maximum VmRSS sampled every 20 ms during a phase (traditional: mosquitto + subscriber); CPU is
utime + stime from /proc (traditional: mosquitto + subscriber, all threads).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# A sibling script: Python puts bench/ on sys.path when this file is run as a script. (`python -m bench.ingest`
# with `from bench.broker import ...` would work too, but bench/ has no __init__.py, so the project's mypy run
# would then find bench/broker.py under two module names, `broker` and `bench.broker`, and stop.)
from broker import (
    HOST,
    BenchError,
    Broker,
    Subscriber,
    _die_with_parent,
    close_clients,
    machine_line,
    mqtt_connect,
    proc_cpu_seconds,
    proc_rss_kib,
    publish_qos0_packet,
    publish_qos1_prefix,
    run_bench,
    split_packets,
    start_gateway,
    start_mosquitto,
)

CLIENTS = 100
SENSORS_PER_CLIENT = 10  # 100 clients x 10 = 1,000 series
QOS1_WINDOW = 32  # in-flight QoS 1 packet ids per client
QOS0_BATCH = 256  # PUBLISH packets per write() call
CONNECT_CONCURRENCY = 50
SECOND = 1_000_000_000
INGEST_BASE_NS = 1_704_067_200 * SECOND  # 2024-01-01T00:00:00Z
DAY_BASE_NS = 1_709_251_200 * SECOND  # 2024-03-01T00:00:00Z
YEAR_BASE_NS = 1_672_531_200 * SECOND  # 2023-01-01T00:00:00Z
DAY_S = 86_400
YEAR_STEP_S = 600  # one reading per 10 minutes: 52,560 in a year
YEAR_READINGS = 365 * DAY_S // YEAR_STEP_S
LATEST_SERIES_READINGS = 100  # readings per series in the table the "latest values" query reads
LOAD_PER_MESSAGE = 100
LOAD_CLIENTS = 10
QUERY_RUNS = 5
IDLE_S = 5.0  # a run ends this long after the stored count last grew
POLL_MIN_S = 0.05
RSS_SAMPLE_S = 0.02
HTTP_TIMEOUT_S = 30.0
HTTP_RE = re.compile(r"listening\b.*?\bhttp=(?P<host>\[[^\]]*\]|[^\s:]+):(?P<port>\d+)")
SUBSCRIBER_TOPIC = "db/append/#"

TARGET_QOS0 = 30_000
TARGET_QOS1 = 15_000
TARGET_BATCH = 300_000
TARGET_QUERY_MS = 50.0
TARGET_RSS_MIB = 64.0

GATEWAY, TRADITIONAL = "gateway", "traditional"


# --------------------------------------------------------------------------------------------------
# Readings and their messages.


def reading_json(name: str, time_ns: int, value: float) -> str:
    return f'["{name}",{time_ns},{value}]'


def client_payloads(client: int, messages: int, per_message: int) -> list[bytes]:
    """The payloads one client sends: its readings cycle through its sensors, one second apart per sensor."""
    payloads, r = [], 0
    for _ in range(messages):
        rows = []
        for _ in range(per_message):
            name = f"c{client:03d}.s{r % SENSORS_PER_CLIENT}"
            rows.append(reading_json(name, INGEST_BASE_NS + r // SENSORS_PER_CLIENT * SECOND, 20 + r % 97 / 10))
            r += 1
        payloads.append((rows[0] if per_message == 1 else "[" + ",".join(rows) + "]").encode())
    return payloads


def spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@dataclass(frozen=True)
class Plan:
    """What the clients publish: a topic, and each client's payloads in order."""

    table: str
    qos: int
    payloads: list[list[bytes]]
    # (t, n): n of the readings have a time >= t, the last ones of every client; None: no such probe.
    tail: tuple[int, int] | None = None

    @property
    def topic(self) -> str:
        return f"db/append/{self.table}"

    @property
    def messages(self) -> int:
        return sum(len(p) for p in self.payloads)


def ingest_plan(table: str, qos: int, messages: int, per_message: int) -> Plan:
    counts = spread(messages, CLIENTS)
    readings = [n * per_message for n in counts]
    last_second = max(min(readings) // SENSORS_PER_CLIENT - 1, 0)  # a second every client has readings at
    tail_count = sum(max(0, n - last_second * SENSORS_PER_CLIENT) for n in readings)
    payloads = [client_payloads(c, counts[c], per_message) for c in range(CLIENTS)]
    return Plan(table, qos, payloads, (INGEST_BASE_NS + last_second * SECOND, tail_count))


def history_plan(table: str) -> Plan:
    """One series 'day' (a day at 1 Hz) and one 'year' (a year, one reading per 10 minutes)."""
    rows = [reading_json("day", DAY_BASE_NS + s * SECOND, 20 + s % 3600 / 100) for s in range(DAY_S)]
    rows += [
        reading_json("year", YEAR_BASE_NS + i * YEAR_STEP_S * SECOND, 10 + i % 144 / 10) for i in range(YEAR_READINGS)
    ]
    chunks = ["[" + ",".join(rows[i : i + LOAD_PER_MESSAGE]) + "]" for i in range(0, len(rows), LOAD_PER_MESSAGE)]
    return Plan(table, 1, [[c.encode() for c in chunks[k::LOAD_CLIENTS]] for k in range(LOAD_CLIENTS)])


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    qos: int
    per_message: int
    target: int

    def messages(self, args: argparse.Namespace) -> int:
        return int(args.batch_messages if self.per_message > 1 else args.messages)

    def readings(self, args: argparse.Namespace) -> int:
        return self.messages(args) * self.per_message


SCENARIOS = (
    Scenario("qos0", f"(a) QoS 0, 1 reading/msg, {CLIENTS} clients", 0, 1, TARGET_QOS0),
    Scenario("qos1", f"(b) QoS 1, 1 reading/msg, {CLIENTS} clients", 1, 1, TARGET_QOS1),
    Scenario("batch", f"(c) QoS 1, {{n}} readings/msg, {CLIENTS} clients", 1, 100, TARGET_BATCH),
)
QUERIES_KEY = "queries"


# --------------------------------------------------------------------------------------------------
# Load generation.


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    sent: int = 0


async def connect_clients(port: int, n: int, prefix: str) -> list[Client]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(i: int) -> Client:
        async with gate:
            reader, writer = await mqtt_connect(port, f"{prefix}-{i:03d}", 10.0)
        return Client(reader, writer)

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    clients = [r for r in results if isinstance(r, Client)]
    errors = [r for r in results if not isinstance(r, Client)]
    if errors:
        await close_clients([c.writer for c in clients])
        raise BenchError(f"{len(errors)} of {n} clients could not connect: {errors[0]!r}")
    return clients


async def drive_qos0(client: Client, packets: list[bytes]) -> None:
    for i in range(0, len(packets), QOS0_BATCH):
        chunk = packets[i : i + QOS0_BATCH]
        client.writer.write(b"".join(chunk))
        client.sent += len(chunk)
        await client.writer.drain()


async def drive_qos1(client: Client, pieces: list[tuple[bytes, bytes]]) -> None:
    """Keep QOS1_WINDOW messages in flight; returns when every one is acknowledged. Packet ids are the message
    index modulo 65535: acknowledgements come back in order, and the window is far smaller than the id space."""
    in_flight: set[int] = set()
    acked, buf, total = 0, bytearray(), len(pieces)
    while acked < total:  # every turn reads data or raises; the caller bounds the time
        room = min(QOS1_WINDOW - len(in_flight), total - client.sent)
        if room > 0:
            chunk = []
            for i in range(client.sent, client.sent + room):
                packet_id = i % 0xFFFF + 1
                in_flight.add(packet_id)
                prefix, payload = pieces[i]
                chunk.append(prefix + packet_id.to_bytes(2, "big") + payload)
            client.writer.write(b"".join(chunk))
            client.sent += room
        data = await client.reader.read(1 << 16)
        if not data:
            raise BenchError(f"the broker closed a client after {client.sent} messages")
        buf += data
        packets, used = split_packets(buf)
        for header, start, end in packets:
            if header == 0xD0:  # PINGRESP
                continue
            packet_id = int.from_bytes(buf[start:end], "big") if header == 0x40 and end - start == 2 else -1
            if packet_id not in in_flight:
                raise BenchError(f"unexpected packet {header:#04x} {buf[start:end].hex()} to a publisher")
            in_flight.discard(packet_id)
            acked += 1
        del buf[:used]


async def publish(clients: list[Client], plan: Plan, timeout: float) -> tuple[float, int]:
    """Publish the plan (pre-encoded before the clock starts); returns the start time and the messages sent."""
    if plan.qos:
        encoded1 = [[(publish_qos1_prefix(plan.topic, p), p) for p in ps] for ps in plan.payloads]
        drives = [drive_qos1(c, e) for c, e in zip(clients, encoded1, strict=True)]
    else:
        encoded0 = [[publish_qos0_packet(plan.topic, p) for p in ps] for ps in plan.payloads]
        drives = [drive_qos0(c, e) for c, e in zip(clients, encoded0, strict=True)]
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*drives)
    except TimeoutError:
        print(f"  {plan.table}: publishers timed out after {timeout:.0f} s", file=sys.stderr)
    return started, sum(c.sent for c in clients)


# --------------------------------------------------------------------------------------------------
# Measuring: memory, the gateway's HTTP API.


class RssSampler:
    """Max of the summed VmRSS (KiB) of some processes, sampled in the background while in the `async with`."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.peak_kib = 0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        total = 0
        for pid in self.pids:
            with contextlib.suppress(OSError, BenchError):
                total += proc_rss_kib(pid)
        self.peak_kib = max(self.peak_kib, total)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(RSS_SAMPLE_S)

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()


class QueryError(BenchError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


def http_query(port: int, query: str) -> tuple[dict[str, Any], float]:
    """GET /db/query; returns the answer's `data` and the seconds from sending the request to the last byte."""
    conn = http.client.HTTPConnection(HOST, port, timeout=HTTP_TIMEOUT_S)
    try:
        started = time.perf_counter()
        conn.request("GET", "/db/query?" + urlencode({"q": query}))
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    try:
        answer = json.loads(body)
    except ValueError:
        raise QueryError(response.status, body[:200].decode(errors="replace")) from None
    if response.status != 200 or not answer.get("success"):
        raise QueryError(response.status, str(answer.get("reason")))
    data: dict[str, Any] = answer["data"]
    return data, elapsed


def stored_count(port: int, query: str) -> int:
    try:
        data, _ = http_query(port, query)
    except QueryError as exc:
        if exc.status == 400 and "no table" in exc.reason:
            return 0  # nothing stored yet
        raise
    return int(data["rows"][0][0])


async def poll_count(port: int, query: str, expected: int, deadline: float) -> tuple[int, float]:
    """Poll a count(*) query until it reaches `expected`, stops growing for IDLE_S, or the deadline passes;
    returns the last count and when it was first seen. Polls are spaced by at least twice their own duration, so
    that they take at most a third of the gateway's time."""
    count, seen_at = -1, time.monotonic()
    while True:
        started = time.monotonic()
        current = await asyncio.to_thread(stored_count, port, query)
        now = time.monotonic()
        if current != count:
            count, seen_at = current, now
        if count >= expected or now - seen_at > IDLE_S or now > deadline:
            return count, seen_at
        await asyncio.sleep(max(POLL_MIN_S, 2 * (now - started)))


async def wait_stored(port: int, plan: Plan, expected: int, deadline: float) -> tuple[int, float]:
    """How many readings of the plan the gateway stored, and when the last one was seen stored.

    A count(*) of the whole table scans every reading (~0.3 s for 50,000 here), so polling it while the gateway
    still ingests would slow the gateway down. When the plan has a tail, that is polled first: the readings at
    the last second of every client, which the gateway stores after the others of their connection (it stores a
    connection's messages in arrival order). Once the tail is complete, one full count(*) must confirm that
    every reading is there; the time is then that of the tail. Otherwise the full count is polled."""
    full = f"select count(*) from {plan.table}"
    if plan.tail is not None:
        tail_from, tail_count = plan.tail
        tail_query = f"{full} where time >= {tail_from}"
        seen, seen_at = await poll_count(port, tail_query, tail_count, deadline)
        if seen >= tail_count:
            stored = await asyncio.to_thread(stored_count, port, full)
            if stored >= expected:
                return stored, seen_at
    return await poll_count(port, full, expected, deadline)


# --------------------------------------------------------------------------------------------------
# The traditional stack's subscriber (child process).


def subscriber_main(spec: dict[str, Any]) -> None:
    """Child-process mode: subscribe to db/append/#, store every reading in RocksDB, print 'ready', then one
    JSON line once `count` readings are stored (or the deadline passes, or nothing came for IDLE_S)."""
    import queue
    import struct

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from rocksdict import Options, Rdict, WriteBatch, WriteOptions

    _die_with_parent()()
    expected, qos, timeout = int(spec["count"]), int(spec["qos"]), float(spec["timeout"])
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(spec["db"]), options)
    no_sync = WriteOptions()
    no_sync.sync = False
    pending: queue.SimpleQueue[tuple[Any, int, bool]] = queue.SimpleQueue()
    value_format, time_format = struct.Struct(">d"), struct.Struct(">Q")
    subscribed, done = threading.Event(), threading.Event()
    progress = {"stored": 0, "last": 0.0, "errors": 0}

    def on_connect(client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            print(f"CONNECT refused: {reason}", flush=True)
            return
        client.subscribe(SUBSCRIBER_TOPIC, qos)

    def on_subscribe(_client: Any, _userdata: Any, _mid: int, reasons: Any, _props: Any) -> None:
        if any(r.is_failure for r in reasons):
            print(f"SUBSCRIBE refused: {reasons}", flush=True)
            return
        subscribed.set()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        try:
            rows = json.loads(message.payload)
            if rows and isinstance(rows[0], str):
                rows = [rows]
            prefix = message.topic.rsplit("/", 1)[-1].encode() + b"\x00"
            batch = WriteBatch(raw_mode=True)
            for name, time_ns, value in rows:
                key = prefix + name.encode() + b"\x00" + time_format.pack(time_ns + (1 << 63))
                batch.put(key, value_format.pack(value))
        except (ValueError, TypeError, struct.error):
            progress["errors"] += 1
            return
        pending.put((batch, len(rows), message.qos > 0))

    def write_batches() -> None:
        while True:
            items = [pending.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    items.append(pending.get_nowait())
            for batch, _, _ in items:
                db.write(batch, no_sync)
            if any(durable for _, _, durable in items):
                db.flush_wal(True)  # fsync the WAL once for everything written above
            progress["stored"] += sum(n for _, n, _ in items)
            progress["last"] = time.monotonic()
            if progress["stored"] >= expected:
                done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=str(spec["client_id"]), clean_session=True)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect(HOST, int(spec["port"]), keepalive=300)
    client.loop_start()
    threading.Thread(target=write_batches, name="writer", daemon=True).start()
    if not subscribed.wait(15.0):
        print("not subscribed within 15 s", flush=True)
        return
    print("ready", flush=True)
    cpu0, deadline, stored, seen_at = time.process_time(), time.monotonic() + timeout, -1, time.monotonic()
    while not done.wait(0.1):
        now = time.monotonic()
        if progress["stored"] != stored:
            stored, seen_at = int(progress["stored"]), now
        if now > deadline or (stored > 0 and now - seen_at > IDLE_S):
            break
    report = {**progress, "cpu": time.process_time() - cpu0}
    print(json.dumps(report), flush=True)
    client.disconnect()
    client.loop_stop()
    os._exit(0)  # the writer thread may hold the store; the data is not needed after the report


async def start_store_subscriber(
    port: int, qos: int, count: int, timeout: float, db: Path, client_id: str
) -> Subscriber:
    """The traditional stack's subscriber: this script run again with --subscriber (see `subscriber_main`)."""
    spec: dict[str, object] = {
        "port": port,
        "qos": qos,
        "count": count,
        "timeout": timeout,
        "db": str(db),
        "client_id": client_id,
    }
    return await Subscriber.spawn(__file__, spec)


# --------------------------------------------------------------------------------------------------
# Runs.


@dataclass
class RunResult:
    sent_readings: int
    stored: int
    seconds: float
    cpu_s: float
    rss_kib: int

    @property
    def rate(self) -> float:
        return self.stored / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_reading(self) -> float:
        return self.cpu_s / self.stored * 1e6 if self.stored else 0.0


@dataclass
class Stacks:
    gateway: Broker | None
    http_port: int
    mosquitto: Broker | None
    workdir: Path
    gateway_rss: list[int] = field(default_factory=list)  # peak KiB of every gateway phase


async def run_gateway(stacks: Stacks, plan: Plan, readings: int, timeout: float, tag: str) -> RunResult:
    gateway = stacks.gateway
    assert gateway is not None
    gateway.check_alive()
    clients = await connect_clients(gateway.port, len(plan.payloads), f"ingest-{tag}")
    try:
        async with RssSampler([gateway.pid]) as rss:
            cpu0 = proc_cpu_seconds(gateway.pid)
            started, sent = await publish(clients, plan, timeout)
            published = time.monotonic() - started
            deadline = started + timeout + IDLE_S
            stored, stored_at = await wait_stored(stacks.http_port, plan, readings, deadline)
            cpu = proc_cpu_seconds(gateway.pid) - cpu0
    finally:
        await close_clients([c.writer for c in clients])
    stacks.gateway_rss.append(rss.peak_kib)
    print(f"  published in {published:.2f} s, stored in {stored_at - started:.2f} s", file=sys.stderr)
    sent_readings = sent * readings // max(plan.messages, 1)
    return RunResult(sent_readings, stored, stored_at - started if stored else 0.0, cpu, rss.peak_kib)


async def run_traditional(stacks: Stacks, plan: Plan, readings: int, timeout: float, tag: str) -> RunResult:
    mosquitto = stacks.mosquitto
    assert mosquitto is not None
    mosquitto.check_alive()
    db = stacks.workdir / f"subscriber-{tag}"
    sub = await start_store_subscriber(mosquitto.port, plan.qos, readings, timeout + IDLE_S, db, f"store-{tag}")
    clients: list[Client] = []
    try:
        await sub.line(20.0)  # "ready": subscribed
        clients = await connect_clients(mosquitto.port, len(plan.payloads), f"ingest-{tag}")
        async with RssSampler([mosquitto.pid, sub.proc.pid]) as rss:
            cpu0 = proc_cpu_seconds(mosquitto.pid)
            started, sent = await publish(clients, plan, timeout)
            published = time.monotonic() - started
            report = json.loads(await sub.line(timeout + 2 * IDLE_S + 10.0))
            cpu = proc_cpu_seconds(mosquitto.pid) - cpu0 + float(report["cpu"])
    finally:
        await close_clients([c.writer for c in clients])
        await sub.stop()
        shutil.rmtree(db, ignore_errors=True)
    if report["errors"]:
        print(f"  traditional {tag}: {report['errors']} messages could not be parsed", file=sys.stderr)
    stored = int(report["stored"])
    print(f"  published in {published:.2f} s, stored in {float(report['last']) - started:.2f} s", file=sys.stderr)
    sent_readings = sent * readings // max(plan.messages, 1)
    seconds = float(report["last"]) - started if stored else 0.0
    return RunResult(sent_readings, stored, seconds, cpu, rss.peak_kib)


async def measure_scenario(
    scenario: Scenario, stacks: Stacks, args: argparse.Namespace
) -> dict[str, list[RunResult] | str]:
    names = [n for n, b in ((GATEWAY, stacks.gateway), (TRADITIONAL, stacks.mosquitto)) if b is not None]
    results: dict[str, list[RunResult] | str] = {n: [] for n in names}
    readings = scenario.readings(args)
    for attempt in range(1, args.repeat + 1):
        table = f"INGEST_{scenario.key.upper()}_{attempt}"
        plan = ingest_plan(table, scenario.qos, scenario.messages(args), scenario.per_message)
        for name in names:
            runs = results[name]
            if isinstance(runs, str):
                continue
            print(f"{name}: {scenario.key} run {attempt}/{args.repeat}", file=sys.stderr)
            run = run_gateway if name == GATEWAY else run_traditional
            try:
                runs.append(await run(stacks, plan, readings, args.timeout, f"{scenario.key}-{attempt}"))
            except (BenchError, OSError, TimeoutError, ValueError, KeyError) as exc:
                print(f"ERROR: {name} {scenario.key}: {exc!r}", file=sys.stderr)
                results[name] = "error"
            await asyncio.sleep(0.5)
    return results


@dataclass(frozen=True)
class QuerySpec:
    label: str
    sql: str
    rows: int


def query_specs(latest_table: str, history_table: str) -> list[QuerySpec]:
    day_end = DAY_BASE_NS + DAY_S * SECOND - 1
    year_end = YEAR_BASE_NS + 365 * DAY_S * SECOND - 1
    series = CLIENTS * SENSORS_PER_CLIENT
    return [
        QuerySpec(
            f"latest value of {series:,} series ({LATEST_SERIES_READINGS} readings each)",
            f"select name, last(time, value) from {latest_table} group by name",
            series,
        ),
        QuerySpec(
            "1 day of 1 Hz data, raw",
            f"select time, value from {history_table} where name = 'day' and time between {DAY_BASE_NS} and {day_end}",
            DAY_S,
        ),
        QuerySpec(
            "1 day of 1 Hz data, 1-minute step",
            f"select DATE_TRUNC('minute', time) as t, avg(value) from {history_table} "
            f"where name = 'day' and time between {DAY_BASE_NS} and {day_end} group by t",
            DAY_S // 60,
        ),
        QuerySpec(
            "1 year at 10-min, 1-hour step",
            f"select DATE_TRUNC('hour', time, 1) as t, avg(value) from {history_table} "
            f"where name = 'year' and time between {YEAR_BASE_NS} and {year_end} group by t",
            365 * 24,
        ),
    ]


@dataclass
class QueryResult:
    spec: QuerySpec
    ms: float | str
    rows: int
    rss_kib: int


async def load(stacks: Stacks, plan: Plan, readings: int, timeout: float) -> None:
    gateway = stacks.gateway
    assert gateway is not None
    result = await run_gateway(stacks, plan, readings, timeout, f"load-{plan.table.lower()}")
    print(f"gateway: loaded {result.stored:,} readings into {plan.table} ({result.rate:,.0f}/s)", file=sys.stderr)
    if result.stored < readings:
        raise BenchError(f"only {result.stored:,} of {readings:,} readings reached {plan.table}")


async def measure_queries(stacks: Stacks, args: argparse.Namespace) -> tuple[int | str, list[QueryResult]]:
    """Load the query data (returns the load phase's peak RSS), then time each query QUERY_RUNS times."""
    gateway = stacks.gateway
    assert gateway is not None
    latest = Plan(
        "LATEST",
        1,
        [
            client_payloads(c, LATEST_SERIES_READINGS // LOAD_PER_MESSAGE * SENSORS_PER_CLIENT, 100)
            for c in range(CLIENTS)
        ],
    )
    history = history_plan("HISTORY")
    peak = len(stacks.gateway_rss)
    try:
        await load(stacks, latest, CLIENTS * SENSORS_PER_CLIENT * LATEST_SERIES_READINGS, args.timeout)
        await load(stacks, history, DAY_S + YEAR_READINGS, args.timeout)
    except (BenchError, OSError, TimeoutError, ValueError, KeyError) as exc:
        print(f"ERROR: gateway loading query data: {exc!r}", file=sys.stderr)
        return "error", []
    load_rss = max(stacks.gateway_rss[peak:])
    results = []
    for spec in query_specs(latest.table, history.table):
        print(f"gateway: query {spec.label}", file=sys.stderr)
        times, rows = [], 0
        async with RssSampler([gateway.pid]) as rss:
            try:
                for _ in range(QUERY_RUNS):
                    data, elapsed = await asyncio.to_thread(http_query, stacks.http_port, spec.sql)
                    times.append(elapsed * 1000)
                    rows = len(data["rows"])
            except (BenchError, OSError, TimeoutError, ValueError, KeyError) as exc:
                print(f"ERROR: gateway query {spec.sql!r}: {exc!r}", file=sys.stderr)
        stacks.gateway_rss.append(rss.peak_kib)
        ms: float | str = statistics.median(times) if len(times) == QUERY_RUNS else "error"
        results.append(QueryResult(spec, ms, rows, rss.peak_kib))
    return load_rss, results


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
    lossy: set[str] = field(default_factory=set)


def fmt_cell(row: Row, name: str) -> str:
    value = row.values.get(name)
    if value is None:
        return "-"
    text = value if isinstance(value, str) else row.fmt.format(value)
    return f"{text} (lossy)" if name in row.lossy else text


def fmt_ratio(row: Row) -> str:
    ours, theirs = row.values.get(GATEWAY), row.values.get(TRADITIONAL)
    if not row.ratio or not isinstance(ours, float) or not isinstance(theirs, float) or theirs == 0:
        return ""
    return f"{ours / theirs:.2f}x"


def fmt_target(row: Row) -> str:
    ours = row.values.get(GATEWAY)
    if not row.target or row.meets is None or not isinstance(ours, float):
        return row.target
    if GATEWAY in row.lossy:
        return f"{row.target}  MISSED (readings lost)"
    return f"{row.target}  {'ok' if row.meets(ours) else 'MISSED'}"


def render(header: str, rows: list[Row]) -> str:
    titles = ["figure", GATEWAY, "mosquitto + paho -> RocksDB", "ratio (gw/trad)", "target (gateway)"]
    cells = [[r.figure, fmt_cell(r, GATEWAY), fmt_cell(r, TRADITIONAL), fmt_ratio(r), fmt_target(r)] for r in rows]
    widths = [max(len(line[i]) for line in [titles, *cells]) for i in range(len(titles))]

    def line(parts: list[str]) -> str:
        first = parts[0].ljust(widths[0])
        rest = [p.rjust(w) for p, w in zip(parts[1:4], widths[1:4], strict=True)]
        return "  ".join([first, *rest, parts[4]]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([header, "", line(titles), rule, *(line(c) for c in cells)])


def rss_row(label: str) -> Row:
    return Row(
        label, fmt="{:.1f}", target=f"<= {TARGET_RSS_MIB:.0f} MB", meets=lambda v: v <= TARGET_RSS_MIB, ratio=True
    )


def scenario_rows(scenario: Scenario, args: argparse.Namespace, results: dict[str, list[RunResult] | str]) -> list[Row]:
    label = scenario.label.format(n=scenario.per_message)
    unit = "readings/s" if scenario.per_message > 1 else "msg/s"
    rows = [
        Row(
            f"{label}: readings/s stored",
            target=f">= {scenario.target:,} {unit}",
            meets=lambda v: v >= scenario.target,
        ),
        Row("    stored/sent readings, all runs", ratio=False),
        Row("    CPU µs per reading (all processes of the stack)", fmt="{:.1f}"),
        rss_row("    max RSS MiB"),
    ]
    for name, runs in results.items():
        if isinstance(runs, str):
            rows[0].values[name] = runs
            continue
        median = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
        rows[0].values[name] = median.rate
        if median.stored < scenario.readings(args):
            rows[0].lossy.add(name)
        rows[1].values[name] = f"{sum(r.stored for r in runs):,}/{sum(r.sent_readings for r in runs):,}"
        rows[2].values[name] = median.cpu_us_per_reading
        rows[3].values[name] = max(r.rss_kib for r in runs) / 1024
    return rows


def query_rows(load_rss: int | str, results: list[QueryResult]) -> list[Row]:
    readings = CLIENTS * SENSORS_PER_CLIENT * LATEST_SERIES_READINGS + DAY_S + YEAR_READINGS
    load_row = rss_row(f"query data load ({readings:,} readings, QoS 1, 100/msg): max RSS MiB")
    load_row.values[GATEWAY] = load_rss / 1024 if isinstance(load_rss, int) else load_rss
    load_row.values[TRADITIONAL] = "n/a"
    rows = [load_row]
    for result in results:
        ms = Row(
            f"query: {result.spec.label} ({result.rows:,} rows), median ms",
            fmt="{:.1f}",
            target=f"<= {TARGET_QUERY_MS:.0f} ms",
            meets=lambda v: v <= TARGET_QUERY_MS,
        )
        ms.values[GATEWAY] = result.ms
        ms.values[TRADITIONAL] = "n/a"
        if isinstance(result.ms, float) and result.rows != result.spec.rows:
            ms.values[GATEWAY] = f"{result.ms:.1f} (expected {result.spec.rows:,} rows)"
        rss = rss_row("    max RSS MiB")
        rss.values[GATEWAY] = result.rss_kib / 1024
        rows += [ms, rss]
    return rows


def header_lines(args: argparse.Namespace) -> str:
    return (
        f"{machine_line()}\n"
        f"(a)/(b): {args.messages:,} messages of 1 reading; (c): {args.batch_messages:,} messages of 100 readings; "
        f"{CLIENTS} clients, {CLIENTS * SENSORS_PER_CLIENT:,} series; QoS 1 window {QOS1_WINDOW} per client\n"
        "readings/s: first PUBLISH written -> last reading stored (gateway: seen by count(*) over HTTP; "
        "traditional: reported by the subscriber)\n"
        f"median of {args.repeat} run(s) per ingest figure, of {QUERY_RUNS} per query; RSS: max VmRSS sampled every "
        f"{RSS_SAMPLE_S * 1000:.0f} ms (traditional: mosquitto + subscriber); CPU: utime+stime of the stack"
    )


# --------------------------------------------------------------------------------------------------
# Main.


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=[GATEWAY, TRADITIONAL], help="benchmark one stack only")
    parser.add_argument(
        "--messages", type=int, default=50_000, help="single-reading messages per run of (a) and (b) (default 50,000)"
    )
    parser.add_argument(
        "--batch-messages", type=int, default=1_000, help="100-reading messages per run of (c) (default 1,000)"
    )
    keys = [s.key for s in SCENARIOS] + [QUERIES_KEY]
    parser.add_argument("--scenarios", nargs="+", choices=keys, default=keys, help="subset to run (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per ingest scenario, median shown (default 1)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per run (default 120)")
    parser.add_argument(
        "--gateway-cmd",
        help="command starting the gateway (shlex-split), run from the repo root; it must log "
        "'listening mqtt=host:port http=host:port' (use --mqtt-port 0 --http-port 0)",
    )
    parser.add_argument("--subscriber", help=argparse.SUPPRESS)  # internal: child-process mode
    args = parser.parse_args(argv)
    if args.messages < CLIENTS or args.batch_messages < CLIENTS or args.repeat < 1 or args.timeout <= 0:
        parser.error(f"--messages and --batch-messages must be >= {CLIENTS}, --repeat >= 1, --timeout > 0")
    return args


async def start_stacks(args: argparse.Namespace, workdir: Path, brokers: list[Broker]) -> Stacks:
    stacks = Stacks(None, 0, None, workdir)
    if args.only != TRADITIONAL:
        try:
            gateway = await start_gateway(workdir, args.gateway_cmd, brokers)
            match = HTTP_RE.search(gateway.log_path.read_text(errors="replace"))
            if not match:
                raise BenchError("the gateway's 'listening' line has no http=host:port")
            stacks.gateway, stacks.http_port = gateway, int(match["port"])
            print(f"gateway: pid {gateway.pid}, mqtt {HOST}:{gateway.port}, http :{stacks.http_port}", file=sys.stderr)
        except BenchError as exc:
            failed = next((b for b in brokers if b.name == GATEWAY), None)
            tail = f"\n--- gateway output ---\n{failed.log_tail()}\n---" if failed else ""
            print(f"ERROR: the gateway did not start: {exc}{tail}", file=sys.stderr)
    if args.only != GATEWAY:
        try:
            stacks.mosquitto = await start_mosquitto(workdir, brokers)
            print(f"mosquitto: pid {stacks.mosquitto.pid}, mqtt {HOST}:{stacks.mosquitto.port}", file=sys.stderr)
        except BenchError as exc:
            print(f"ERROR: mosquitto did not start: {exc}", file=sys.stderr)
    return stacks


async def bench(args: argparse.Namespace, workdir: Path, brokers: list[Broker]) -> int:
    """Run everything; returns the exit status (1 if a stack failed to start or a run failed)."""
    stacks = await start_stacks(args, workdir, brokers)
    wanted = 1 if args.only else 2
    started = sum(b is not None for b in (stacks.gateway, stacks.mosquitto))
    if not started:
        return 1
    status = 0 if started == wanted else 1
    await asyncio.sleep(1.0)
    idle = rss_row("idle RSS MiB (traditional: mosquitto only)")
    if stacks.gateway is not None:
        idle.values[GATEWAY] = proc_rss_kib(stacks.gateway.pid) / 1024
        stacks.gateway_rss.append(proc_rss_kib(stacks.gateway.pid))
    if stacks.mosquitto is not None:
        idle.values[TRADITIONAL] = proc_rss_kib(stacks.mosquitto.pid) / 1024
    rows = [idle]
    for scenario in (s for s in SCENARIOS if s.key in args.scenarios):
        results = await measure_scenario(scenario, stacks, args)
        if any(isinstance(r, str) for r in results.values()):
            status = 1
        rows += scenario_rows(scenario, args, results)
    if QUERIES_KEY in args.scenarios and stacks.gateway is not None:
        load_rss, queries = await measure_queries(stacks, args)
        if isinstance(load_rss, str) or any(isinstance(q.ms, str) for q in queries):
            status = 1
        rows += query_rows(load_rss, queries)
    if stacks.gateway is not None:
        overall = rss_row("gateway max RSS MiB, all phases")
        overall.values[GATEWAY] = max(stacks.gateway_rss) / 1024
        overall.ratio = False
        rows.append(overall)
        if stacks.gateway.proc.poll() is not None:
            print(f"--- gateway output ---\n{stacks.gateway.log_tail()}\n---", file=sys.stderr)
            status = 1
    print(render(header_lines(args), rows))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.subscriber:
        subscriber_main(json.loads(args.subscriber))
        return 1  # subscriber_main exits the process once it has reported
    return run_bench(bench, args, "bench-ingest-")


if __name__ == "__main__":
    sys.exit(main())
