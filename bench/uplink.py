"""Uplink benchmark: how fast the gateway forwards a stored backlog upstream, and what catching up costs ingest.

Run it from the repository root, as ``bench/broker.py`` is run (it imports that script's and ``bench/ingest.py``'s
helpers)::

    .venv/bin/python bench/uplink.py                      # 1,000,000 readings of backlog, 3 runs (~2.5 min here)
    .venv/bin/python bench/uplink.py --backlog 200000     # quick mode (~25 s with --repeat 1)
    .venv/bin/python bench/uplink.py --repeat 3 --max-rate 10000
    .venv/bin/python bench/uplink.py --backlog 200000 --keep --gateway-cmd \\
        '.venv/bin/python -m cProfile -o /tmp/gateway-{phase}.prof -m gateway'

The upstream is Debian's mosquitto on a free loopback port; the gateway (``python -m gateway serve`` with
``--uplink mqtt://127.0.0.1:<port>``, a fresh ``--data-dir``, free ports, ``[mdns] enabled = false`` and
``[uplink] reconnect_max = 1``, so that it tries the upstream again within a second) starts while nothing listens
there. ``--gateway-cmd`` replaces ``python -m gateway``; ``{phase}`` in it becomes the gateway's name (``uplink-1``,
``paced-1``, ...), e.g. to give each cProfile run its own file (with ``--keep`` the logs stay too).

1. Forwarding: N readings (``--backlog``) are loaded over MQTT by ``bench/ingest.py``'s load generator (100 clients,
   QoS 1, 100 readings a message: acknowledged means stored), ``GET /api/uplink`` must show them all as backlog;
   then a counting subscriber (this script with ``--subscriber``, a raw MQTT 3.1.1 client in a child process,
   subscribed to ``db/append/#`` at QoS 1, counting the rows of each JSON payload as ``count(b"],[") + 1``) waits
   for mosquitto, which starts next. The clock runs from the gateway's connection to the upstream
   (``connected_since``) to the subscriber's N-th row. The subscriber keeps counting for another second: rows
   beyond N are duplicates.
2. Ingest during catch-up, with the same gateway: (a) baseline: ``bench/ingest.py``'s QoS 1 load with 10 readings
   a message (100 clients, 32 in flight each; ``--ingest`` readings) while the uplink is connected and has nothing
   to catch up (the load's readings are forwarded live, as on a site); (b) mosquitto stops, N readings are loaded
   again, mosquitto starts, and the same load runs as soon as the gateway has reconnected; ingest readings/s,
   against (a), and readings forwarded per second meanwhile; then the time until the backlog (N plus the load) is
   gone. (c) as (b) in a fresh gateway with ``[uplink] max_rate`` (``--max-rate``), not waited out.

Ingest readings/s are from the first PUBLISH written to the last PUBACK (QoS 1: a PUBACK means stored); forwarded
readings are ``forwarding.forwarded`` of ``/api/uplink`` (readings the upstream acknowledged); "caught up" means
``forwarded`` reached every reading the bench stored, and ``backlog`` should then be 0 (the last row of the table
says whether it was). CPU is utime+stime
of the gateway from /proc; RSS the maximum VmRSS sampled every 20 ms. Each figure is the median over ``--repeat``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker import (
    HOST,
    START_TIMEOUT_S,
    BenchError,
    Broker,
    Subscriber,
    _die_with_parent,
    close_clients,
    free_port,
    get_json,
    machine_line,
    mosquitto_binary,
    mqtt_connect,
    proc_cpu_seconds,
    proc_rss_kib,
    read_packet,
    read_within,
    run_bench,
    spawn,
    start_gateway,
    subscribe_packet,
    take_publishes,
    wait_accepting,
)
from ingest import CLIENTS, HTTP_RE, QOS1_WINDOW, Client, RssSampler, connect_clients, ingest_plan, publish

LOAD_PER_MESSAGE = 100  # readings per message of the backlog load
INGEST_PER_MESSAGE = 10  # readings per message of the ingest load
SUBSCRIBER_FILTER = "db/append/#"
SUBSCRIBER_IDLE_S = 10.0  # the subscriber gives up this long after its last message
DUPLICATES_GRACE_S = 1.0  # and counts this long after the N-th row, for duplicates
POLL_S = 0.25
FAST_POLL_S = 0.02
TARGET_FORWARD = 50_000
TARGET_INGEST_RATIO = 0.70


# --------------------------------------------------------------------------------------------------
# The counting subscriber (child process).


async def subscriber_main(spec: dict[str, Any]) -> None:
    """Child-process mode: connect as soon as the upstream accepts, subscribe, print 'ready', count rows, then print
    one JSON line once `count` rows came and nothing more for DUPLICATES_GRACE_S (or on idle, or the deadline)."""
    port, expected, client_id = int(spec["port"]), int(spec["count"]), str(spec["client_id"])
    deadline = time.monotonic() + float(spec["timeout"])
    while True:  # the upstream is not up yet: retry often, to subscribe before the gateway (retrying each second)
        try:
            reader, writer = await mqtt_connect(port, client_id, 5.0)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.005)
    writer.write(subscribe_packet(1, SUBSCRIBER_FILTER, 1))
    async with asyncio.timeout(10.0):
        first, body = await read_packet(reader)
    if first != 0x90 or body[-1] == 0x80:
        raise BenchError(f"SUBSCRIBE refused: {first:#04x} {body.hex()}")
    subscribed = time.monotonic()
    print("ready", flush=True)
    cpu0 = time.process_time()
    rows = messages = 0
    first_at = reached_at = last_at = 0.0
    buf = bytearray()
    while True:  # every turn reads data or ends the loop
        now = time.monotonic()
        wait = DUPLICATES_GRACE_S if rows >= expected else SUBSCRIBER_IDLE_S if rows else deadline - now
        data = await read_within(reader, min(wait, deadline - now), 1 << 18)
        if not data:
            break
        now = time.monotonic()
        buf += data
        spans, acks, used = take_publishes(buf)
        messages += len(spans)
        rows += sum(buf.count(b"],[", start, end) + 1 for start, end in spans)  # [["name",t,v],["name",t,v],...]
        del buf[:used]
        if acks:
            writer.write(acks)
        if spans:
            first_at, last_at = first_at or now, now
            if rows >= expected and not reached_at:
                reached_at = now
    result = {
        "rows": rows,
        "messages": messages,
        "subscribed": subscribed,
        "first": first_at,
        "reached": reached_at,
        "last": last_at,
        "cpu": time.process_time() - cpu0,
    }
    print(json.dumps(result), flush=True)
    await close_clients([writer])


# --------------------------------------------------------------------------------------------------
# The gateway and the upstream.


@dataclass
class Gateway:
    broker: Broker
    http_port: int
    upstream_port: int
    rss: list[int] = field(default_factory=list)  # peak KiB of each measured phase
    stored: int = 0  # readings the bench stored in it: all forwarded = caught up
    stale: int = 0  # the most /api/uplink's backlog showed once every stored reading was forwarded (should be 0)

    @property
    def pid(self) -> int:
        return self.broker.pid

    def uplink(self) -> dict[str, Any]:
        status: dict[str, Any] = get_json(self.http_port, "/api/uplink")
        if not status.get("enabled"):
            raise BenchError(f"the gateway has no uplink: {status}")
        return status

    async def uplink_now(self) -> dict[str, Any]:
        self.broker.check_alive()
        return await asyncio.to_thread(self.uplink)

    async def forwarding(self) -> dict[str, Any]:
        forwarding: dict[str, Any] = (await self.uplink_now())["forwarding"]
        return forwarding

    async def wait_caught_up(self, timeout: float) -> bool:
        """Wait until the upstream acknowledged every reading stored. Judged by `forwarded`, not by `backlog`: that
        counter can stay above 0 when the forwarder read an entry before the store told it of its readings."""
        deadline = time.monotonic() + timeout
        while True:
            forwarding = await self.forwarding()
            if int(forwarding["forwarded"]) >= self.stored:
                if forwarding["backlog"]:
                    self.stale = max(self.stale, int(forwarding["backlog"]))
                    print(f"  WARNING: all forwarded, but backlog shows {forwarding['backlog']:,}", file=sys.stderr)
                return True
            if time.monotonic() > deadline:
                left = self.stored - int(forwarding["forwarded"])
                print(f"  WARNING: {left:,} readings not forwarded after {timeout:.0f} s", file=sys.stderr)
                return False
            await asyncio.sleep(POLL_S)


def gateway_config(args: argparse.Namespace, max_rate: float) -> str:
    return (
        "[mdns]\nenabled = false\n\n"
        "[uplink]\n"
        f"batch_size = {args.batch_size}\n"
        f"max_inflight = {args.max_inflight}\n"
        f"max_rate = {max_rate:.1f}\n"
        "# retry the upstream every 0.5-1 s, not with a backoff growing to minutes while the backlog loads\n"
        "reconnect_max = 1.0\n"
    )


async def start_uplink_gateway(
    root: Path, name: str, args: argparse.Namespace, max_rate: float, brokers: list[Broker]
) -> Gateway:
    workdir = root / name
    workdir.mkdir()
    config = workdir / "gateway.toml"
    config.write_text(gateway_config(args, max_rate))
    upstream_port = free_port()
    prefix = shlex.split(args.gateway_cmd.replace("{phase}", name)) if args.gateway_cmd else [sys.executable, "-m"]
    if not args.gateway_cmd:
        prefix.append("gateway")
    command = [
        *prefix,
        *("serve", "--bind", HOST, "--mqtt-port", "0", "--http-port", "0", "--mqttsn-port", "0", "--ws-port", "0"),
        *("--data-dir", str(workdir / "gateway-data"), "--config", str(config)),
        *("--uplink", f"mqtt://{HOST}:{upstream_port}"),
    ]
    broker = await start_gateway(workdir, shlex.join(command), brokers)  # it makes gateway-data
    broker.name = name
    match = HTTP_RE.search(broker.log_path.read_text(errors="replace"))
    if not match:
        raise BenchError("the gateway's 'listening' line has no http=host:port")
    gateway = Gateway(broker, int(match["port"]), upstream_port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:  # the HTTP API answers a little after the line
        try:
            await gateway.uplink_now()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    print(
        f"{name}: pid {broker.pid}, mqtt :{broker.port}, http :{gateway.http_port}, uplink :{upstream_port}",
        file=sys.stderr,
    )
    return gateway


async def start_upstream(root: Path, name: str, port: int, brokers: list[Broker]) -> Broker:
    """mosquitto on `port` (bench/broker.py's start_mosquitto picks its own port; the gateway's is fixed)."""
    conf = root / f"{name}.conf"
    stay_root = "user root\n" if os.geteuid() == 0 else ""  # as root, mosquitto would drop PR_SET_PDEATHSIG
    conf.write_text(
        f"listener {port} {HOST}\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\n{stay_root}"
    )
    upstream = spawn(name, [mosquitto_binary(), "-c", str(conf)], root, brokers)
    upstream.port = port
    await wait_accepting(upstream, time.monotonic() + START_TIMEOUT_S)
    return upstream


async def wait_uplink(gateway: Gateway, what: str, ready: Callable[[dict[str, Any]], bool], timeout: float) -> Any:
    """Poll /api/uplink until `ready` holds; returns that status."""
    deadline = time.monotonic() + timeout
    while True:
        status = await gateway.uplink_now()
        if ready(status):
            return status
        if time.monotonic() > deadline:
            raise BenchError(f"{gateway.broker.name}: {what} not within {timeout:.0f} s: {status}")
        await asyncio.sleep(FAST_POLL_S)


def connected_at(status: dict[str, Any]) -> float:
    """The gateway's connected_since (Unix time), on this process's monotonic clock."""
    return float(status["connected_since"]) - time.time() + time.monotonic()


async def load_backlog(gateway: Gateway, table: str, readings: int, timeout: float) -> float:
    """Store `readings` in `table` (the uplink is down): returns readings/s; the uplink's backlog must show them."""
    before = int((await gateway.forwarding())["backlog"])
    plan = ingest_plan(table, 1, readings // LOAD_PER_MESSAGE, LOAD_PER_MESSAGE)
    clients = await connect_clients(gateway.broker.port, CLIENTS, f"load-{table.lower()}")
    try:
        started, sent = await publish(clients, plan, timeout)
        elapsed = time.monotonic() - started
    finally:
        await close_clients([c.writer for c in clients])
    if sent < plan.messages:
        raise BenchError(f"{table}: only {sent:,} of {plan.messages:,} messages were sent")
    backlog = int((await gateway.forwarding())["backlog"])
    print(f"  loaded {readings:,} readings in {elapsed:.1f} s; backlog {backlog:,}", file=sys.stderr)
    if backlog != before + readings:
        raise BenchError(f"/api/uplink shows a backlog of {backlog:,}, not {before + readings:,}")
    gateway.stored += readings
    return readings / elapsed


# --------------------------------------------------------------------------------------------------
# The phases.


@dataclass
class Forwarding:
    load_rate: float
    backlog_seen: int
    seconds: float
    cpu_s: float
    rss_before_kib: int
    rss_kib: int
    rows: int
    messages: int
    sub_cpu_s: float
    race: bool  # the gateway connected before the subscriber had subscribed

    def rate(self, n: int) -> float:
        return min(self.rows, n) / self.seconds if self.seconds > 0 else 0.0


async def measure_forwarding(
    gateway: Gateway, root: Path, tag: str, n: int, args: argparse.Namespace, brokers: list[Broker]
) -> tuple[Forwarding, Broker]:
    """Phase 1; returns its figures and the upstream, left running."""
    print(f"{tag}: loading a backlog of {n:,} readings, upstream down", file=sys.stderr)
    load_rate = await load_backlog(gateway, f"UPLINK_{tag.upper().replace('-', '_')}", n, args.timeout)
    backlog_seen = int((await gateway.forwarding())["backlog"])
    spec = {"port": gateway.upstream_port, "count": n, "timeout": args.timeout, "client_id": f"bench-count-{tag}"}
    sub = await Subscriber.spawn(__file__, spec)
    try:
        await asyncio.sleep(0.3)  # the child is up and knocking
        print(f"{tag}: starting mosquitto, catching up", file=sys.stderr)
        rss_before = proc_rss_kib(gateway.pid)
        cpu0 = proc_cpu_seconds(gateway.pid)
        async with RssSampler([gateway.pid]) as rss:
            upstream = await start_upstream(root, f"mosquitto-{tag}", gateway.upstream_port, brokers)
            await sub.line(15.0)  # "ready": subscribed
            status = await wait_uplink(gateway, "connected", lambda s: s["connected"], 30.0)
            started = connected_at(status)
            await gateway.wait_caught_up(args.timeout)
            cpu = proc_cpu_seconds(gateway.pid) - cpu0
        report = json.loads(await sub.line(args.timeout + SUBSCRIBER_IDLE_S + 10.0))
    finally:
        await sub.stop()
    end = report["reached"] or report["last"]
    result = Forwarding(
        load_rate=load_rate,
        backlog_seen=backlog_seen,
        seconds=end - started if report["rows"] else 0.0,
        cpu_s=cpu,
        rss_before_kib=rss_before,
        rss_kib=rss.peak_kib,
        rows=int(report["rows"]),
        messages=int(report["messages"]),
        sub_cpu_s=float(report["cpu"]),
        race=started < float(report["subscribed"]),
    )
    gateway.rss.append(rss.peak_kib)
    print(
        f"  {result.rows:,} rows in {result.messages:,} messages, {result.seconds:.1f} s from the connection "
        f"({result.rate(n):,.0f}/s)",
        file=sys.stderr,
    )
    return result, upstream


@dataclass
class Ingest:
    rate: float  # readings/s stored
    cpu_us: float  # gateway CPU per reading stored (forwarding included)
    forwarded_rate: float  # readings/s the uplink forwarded meanwhile
    backlog_left: int  # when the load ended
    catch_up_s: float = 0.0  # (b): from the connection to an empty backlog
    catch_up_readings: int = 0


async def run_ingest(gateway: Gateway, clients: list[Client], table: str, readings: int, timeout: float) -> Ingest:
    plan = ingest_plan(table, 1, readings // INGEST_PER_MESSAGE, INGEST_PER_MESSAGE)
    forwarded0 = int((await gateway.forwarding())["forwarded"])
    cpu0 = proc_cpu_seconds(gateway.pid)
    async with RssSampler([gateway.pid]) as rss:
        started, sent = await publish(clients, plan, timeout)
        ended = time.monotonic()
        cpu = proc_cpu_seconds(gateway.pid) - cpu0
        forwarding = await gateway.forwarding()
    gateway.rss.append(rss.peak_kib)
    if sent < plan.messages:
        raise BenchError(f"{table}: only {sent:,} of {plan.messages:,} messages were acknowledged")
    elapsed = ended - started
    stored = plan.messages * INGEST_PER_MESSAGE
    gateway.stored += stored
    forwarded = int(forwarding["forwarded"]) - forwarded0
    left = gateway.stored - int(forwarding["forwarded"])
    print(
        f"  ingest: {stored:,} readings in {elapsed:.2f} s ({stored / elapsed:,.0f}/s); forwarded meanwhile "
        f"{forwarded:,}; left {left:,}",
        file=sys.stderr,
    )
    return Ingest(stored / elapsed, cpu / stored * 1e6, forwarded / elapsed, left)


async def measure_baseline(gateway: Gateway, tag: str, args: argparse.Namespace) -> Ingest:
    print(f"{tag}: ingest baseline, uplink connected, no backlog", file=sys.stderr)
    clients = await connect_clients(gateway.broker.port, CLIENTS, f"base-{tag}")
    try:
        return await run_ingest(gateway, clients, f"BASE_{tag.upper().replace('-', '_')}", args.ingest, args.timeout)
    finally:
        await close_clients([c.writer for c in clients])


async def measure_during_catch_up(
    gateway: Gateway,
    upstream: Broker | None,
    root: Path,
    tag: str,
    n: int,
    args: argparse.Namespace,
    brokers: list[Broker],
    *,
    wait_out: bool,
) -> Ingest:
    """Phase 2 (b) or (c): a backlog of n with the upstream down, then the upstream back and the ingest load."""
    if upstream is not None:
        # What the last load left to forward goes first: the backlog is then exactly n.
        if not await gateway.wait_caught_up(args.timeout):
            raise BenchError(f"{gateway.broker.name} did not forward the last load")
        upstream.stop()
        await wait_uplink(gateway, "disconnected", lambda s: not s["connected"], 30.0)
    print(f"{tag}: loading a backlog of {n:,} readings, upstream down", file=sys.stderr)
    await load_backlog(gateway, f"UPLINK_{tag.upper().replace('-', '_')}", n, args.timeout)
    total = gateway.stored - int((await gateway.forwarding())["forwarded"]) + args.ingest
    clients = await connect_clients(gateway.broker.port, CLIENTS, f"ingest-{tag}")
    try:
        print(f"{tag}: starting mosquitto, then the ingest load", file=sys.stderr)
        await start_upstream(root, f"mosquitto-{tag}", gateway.upstream_port, brokers)
        status = await wait_uplink(gateway, "connected", lambda s: s["connected"], 30.0)
        started = connected_at(status)
        result = await run_ingest(
            gateway, clients, f"INGEST_{tag.upper().replace('-', '_')}", args.ingest, args.timeout
        )
    finally:
        await close_clients([c.writer for c in clients])
    if wait_out:
        async with RssSampler([gateway.pid]) as rss:
            await gateway.wait_caught_up(args.timeout)
        gateway.rss.append(rss.peak_kib)
        result.catch_up_s, result.catch_up_readings = time.monotonic() - started, total
        print(f"  caught up with {total:,} readings in {result.catch_up_s:.1f} s", file=sys.stderr)
    return result


@dataclass
class Run:
    forwarding: Forwarding
    baseline: Ingest
    during: Ingest
    paced: Ingest | None
    max_rss_kib: int
    stale: int


async def one_run(attempt: int, root: Path, args: argparse.Namespace, brokers: list[Broker]) -> Run:
    n = args.backlog
    gateway = await start_uplink_gateway(root, f"uplink-{attempt}", args, 0.0, brokers)
    try:
        forwarding, upstream = await measure_forwarding(gateway, root, f"forward-{attempt}", n, args, brokers)
        baseline = await measure_baseline(gateway, f"base-{attempt}", args)
        during = await measure_during_catch_up(
            gateway, upstream, root, f"catchup-{attempt}", n, args, brokers, wait_out=True
        )
    finally:
        stop_all(brokers)
    paced = None
    if args.max_rate:
        gateway2 = await start_uplink_gateway(root, f"paced-{attempt}", args, args.max_rate, brokers)
        try:
            paced = await measure_during_catch_up(
                gateway2, None, root, f"paced-{attempt}", n, args, brokers, wait_out=False
            )
        finally:
            stop_all(brokers)
        gateway.rss += gateway2.rss
    return Run(forwarding, baseline, during, paced, max(gateway.rss), gateway.stale)


def stop_all(brokers: list[Broker]) -> None:
    """Stop the gateways and upstreams started so far (run_bench would too, at the end)."""
    for broker in brokers:
        broker.stop()


# --------------------------------------------------------------------------------------------------
# The table.


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def each_run(values: list[int]) -> str:
    return (
        f"{values[0]:,} each run" if len(set(values)) == 1 and len(values) > 1 else "/".join(f"{v:,}" for v in values)
    )


def mark(ok: bool) -> str:
    return "ok" if ok else "below"


def table(runs: list[Run], args: argparse.Namespace) -> list[tuple[str, str, str]]:
    n = args.backlog
    fw = [r.forwarding for r in runs]
    rate = median([f.rate(n) for f in fw])
    rows_counted = [f.rows for f in fw]
    duplicates = sum(max(0, r - n) for r in rows_counted)
    lost = sum(max(0, n - r) for r in rows_counted)
    counted = f"{n:,} each run" if set(rows_counted) == {n} else "/".join(f"{r:,}" for r in rows_counted)
    if duplicates or lost:
        counted += f" ({duplicates:,} duplicates, {lost:,} missing)"
    if any(f.race for f in fw):
        counted += " (the gateway connected before the subscriber)"
    base = median([r.baseline.rate for r in runs])
    during = median([r.during.rate for r in runs])
    ratio = median([r.during.rate / r.baseline.rate for r in runs])
    out = [
        (
            f"1 backlog loaded: readings/s stored ({CLIENTS} clients, QoS 1, {LOAD_PER_MESSAGE}/msg)",
            f"{median([f.load_rate for f in fw]):,.0f}",
            "",
        ),
        (
            "    /api/uplink backlog before the upstream came",
            each_run([f.backlog_seen for f in fw]),
            f"= {n:,}  " + mark(all(f.backlog_seen == n for f in fw)),
        ),
        (
            "  readings/s forwarded (connection -> subscriber's last row)",
            f"{rate:,.0f}",
            f">= {TARGET_FORWARD:,}  {mark(rate >= TARGET_FORWARD)}",
        ),
        ("    catch-up seconds", f"{median([f.seconds for f in fw]):.1f}", ""),
        ("    gateway CPU µs per reading forwarded", f"{median([f.cpu_s / n * 1e6 for f in fw]):.1f}", ""),
        (
            "    gateway peak RSS MiB during catch-up (before it)",
            f"{max(f.rss_kib for f in fw) / 1024:.1f} ({max(f.rss_before_kib for f in fw) / 1024:.1f})",
            "",
        ),
        (f"    rows counted by the subscriber (of {n:,})", counted, mark(not duplicates and not lost)),
        (
            "    messages received / subscriber CPU busy share",
            f"{median([f.messages for f in fw]):,.0f} / "
            f"{median([f.sub_cpu_s / f.seconds if f.seconds else 0 for f in fw]):.0%}",
            "",
        ),
        ("2a ingest, uplink connected, no backlog: readings/s stored", f"{base:,.0f}", ""),
        (
            "    gateway CPU µs per reading (forwarding included)",
            f"{median([r.baseline.cpu_us for r in runs]):.1f}",
            "",
        ),
        ("    readings/s forwarded meanwhile", f"{median([r.baseline.forwarded_rate for r in runs]):,.0f}", ""),
        (f"2b ingest during a catch-up of {n:,}: readings/s stored", f"{during:,.0f}", ""),
        ("    ratio to 2a", f"{ratio:.0%}", f">= {TARGET_INGEST_RATIO:.0%}  {mark(ratio >= TARGET_INGEST_RATIO)}"),
        ("    gateway CPU µs per reading", f"{median([r.during.cpu_us for r in runs]):.1f}", ""),
        ("    readings/s forwarded meanwhile", f"{median([r.during.forwarded_rate for r in runs]):,.0f}", ""),
        ("    backlog left when the load ended", f"{median([r.during.backlog_left for r in runs]):,.0f}", ""),
        (
            f"    seconds to forward all {runs[0].during.catch_up_readings:,} (backlog + load) from the connection",
            f"{median([r.during.catch_up_s for r in runs]):.1f}",
            "",
        ),
    ]
    paced = [r.paced for r in runs if r.paced is not None]
    if paced:
        paced_ratio = median([p.rate / r.baseline.rate for r, p in zip(runs, paced, strict=True)])
        out += [
            (
                f"2c as 2b, [uplink] max_rate = {args.max_rate:,.0f}: readings/s stored",
                f"{median([p.rate for p in paced]):,.0f}",
                "",
            ),
            (
                "    ratio to 2a",
                f"{paced_ratio:.0%}",
                f">= {TARGET_INGEST_RATIO:.0%}  " + mark(paced_ratio >= TARGET_INGEST_RATIO),
            ),
            ("    gateway CPU µs per reading", f"{median([p.cpu_us for p in paced]):.1f}", ""),
            ("    readings/s forwarded meanwhile", f"{median([p.forwarded_rate for p in paced]):,.0f}", ""),
            ("    backlog left when the load ended", f"{median([p.backlog_left for p in paced]):,.0f}", ""),
        ]
    stale = max(r.stale for r in runs)
    out.append(
        ("/api/uplink backlog once all was forwarded (max)", f"{stale:,}", "= 0  " + ("ok" if not stale else "wrong"))
    )
    out.append(("gateway max RSS MiB, all phases", f"{max(r.max_rss_kib for r in runs) / 1024:.1f}", ""))
    return out


def render(header: str, rows: list[tuple[str, str, str]]) -> str:
    titles = ("figure", "gateway", "target")
    widths = [max(len(r[i]) for r in [titles, *rows]) for i in range(2)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]}".rstrip() for r in [titles, *rows]]
    lines.insert(1, f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 20}")
    return "\n".join([header, "", *lines])


def header_lines(args: argparse.Namespace) -> str:
    paced = f"; 2c: max_rate {args.max_rate:,.0f} readings/s" if args.max_rate else ""
    return (
        f"{machine_line()}\n"
        f"backlog {args.backlog:,} readings; upstream: mosquitto on loopback, 1 subscriber to {SUBSCRIBER_FILTER} "
        f"at QoS 1; [uplink] batch_size {args.batch_size}, max_inflight {args.max_inflight}{paced}\n"
        f"ingest load: {args.ingest:,} readings, {CLIENTS} clients, QoS 1, {INGEST_PER_MESSAGE} readings/msg, "
        f"{QOS1_WINDOW} in flight per client (bench/ingest.py's load); first PUBLISH -> last PUBACK\n"
        f"median of {args.repeat} run(s); CPU: utime+stime of the gateway; RSS: max VmRSS sampled every 20 ms"
    )


# --------------------------------------------------------------------------------------------------
# Main.


async def bench_main(args: argparse.Namespace, workdir: Path, brokers: list[Broker]) -> int:
    root = Path(tempfile.mkdtemp(prefix="bench-uplink-keep-")) if args.keep else workdir
    if args.keep:
        print(f"data directories and logs: {root}", file=sys.stderr)
    started = time.monotonic()
    runs = []
    try:
        for attempt in range(1, args.repeat + 1):
            print(f"run {attempt}/{args.repeat}", file=sys.stderr)
            runs.append(await one_run(attempt, root, args, brokers))
    except (BenchError, OSError, TimeoutError, ValueError, KeyError) as exc:
        print(f"ERROR: {exc!r}", file=sys.stderr)
        for broker in brokers:
            if broker.proc.poll() is not None and broker.proc.returncode not in (0, -15):
                print(f"--- {broker.name} output ---\n{broker.log_tail()}\n---", file=sys.stderr)
        if not runs:
            return 1
    print(render(header_lines(args), table(runs, args)))
    print(f"(bench run time {time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0 if len(runs) == args.repeat else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--backlog", type=int, default=1_000_000, help="readings waiting when the upstream comes (default 1,000,000)"
    )
    parser.add_argument(
        "--ingest", type=int, default=200_000, help="readings of the ingest load in 2a-2c (default 200,000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs, median shown (default 3)")
    parser.add_argument(
        "--max-rate", type=float, default=20_000, help="[uplink] max_rate of run 2c, readings/s; 0: no 2c"
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="[uplink] batch_size (default 1000)")
    parser.add_argument("--max-inflight", type=int, default=8, help="[uplink] max_inflight (default 8)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per phase (default 180)")
    parser.add_argument("--keep", action="store_true", help="keep the data directories and logs (path on stderr)")
    parser.add_argument(
        "--gateway-cmd", help="what runs the gateway instead of 'python -m gateway' (shlex-split; {phase}: its name)"
    )
    parser.add_argument("--subscriber", help=argparse.SUPPRESS)  # internal: child-process mode
    args = parser.parse_args(argv)
    if args.backlog < 10_000 or args.ingest < 10_000 or args.repeat < 1 or args.max_rate < 0 or args.timeout <= 0:
        parser.error("--backlog and --ingest must be >= 10,000, --repeat >= 1, --max-rate >= 0, --timeout > 0")
    args.backlog -= args.backlog % (LOAD_PER_MESSAGE * CLIENTS)
    args.ingest -= args.ingest % (INGEST_PER_MESSAGE * CLIENTS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.subscriber:
        _die_with_parent()()
        asyncio.run(subscriber_main(json.loads(args.subscriber)))
        return 0
    return run_bench(bench_main, args, "bench-uplink-")


if __name__ == "__main__":
    sys.exit(main())
