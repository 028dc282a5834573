"""MQTT-SN benchmark: publishes per second over UDP from 100 clients into storage, and memory per client.

Run from the repository root (it imports bench/broker.py's helpers)::

    .venv/bin/python bench/mqttsn.py
    .venv/bin/python bench/mqttsn.py --messages 20000 --sleepers 2000

The load generator speaks MQTT-SN 1.2 with its own few encoders (written from the specification, not the
gateway's codec), 100 clients on 100 UDP sockets in this process, each registering `db/append/SNBENCH` and
publishing one JSON reading per message to 10 series of its own:

* QoS 0: every client sends its share as fast as the event loop lets it, yielding every 8 messages (UDP has no
  flow control: what the gateway's socket cannot hold is lost, and counted: stored/sent). The run ends when the
  gateway's HTTP API counts every reading stored, or the count stops growing.
* QoS 1: each client keeps 4 publishes in flight and sends the next on each PUBACK; a PUBACK means stored.

Memory, measured first: the gateway's RSS with N clients connected (idle), and then with them all asleep
(DISCONNECT with a duration, nothing buffered), per client. Targets on this machine: >= 20,000 QoS 0
publishes/s stored, <= 2 KB per sleeping client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from broker import (
    HOST,
    BenchError,
    Broker,
    get_json,
    machine_line,
    proc_cpu_seconds,
    proc_rss_kib,
    run_bench,
    start_gateway,
)

CLIENTS = 100
SERIES_PER_CLIENT = 10
QOS1_WINDOW = 4
T0 = 1_700_000_000_000_000_000
TARGET_QOS0 = 20_000
TARGET_SLEEPER_BYTES = 2048
ENDPOINTS_RE = re.compile(r"listening (.*)$", re.MULTILINE)


# MQTT-SN 1.2 messages (§5.4), 1-octet Length form.
def _message(msg_type: int, body: bytes) -> bytes:
    return bytes((len(body) + 2, msg_type)) + body


def connect(client_id: str, duration: int) -> bytes:
    return _message(0x04, b"\x04\x01" + struct.pack(">H", duration) + client_id.encode())


def register(msg_id: int, topic: str) -> bytes:
    return _message(0x0A, struct.pack(">HH", 0, msg_id) + topic.encode())


def publish(qos: int, topic_id: int, msg_id: int, data: bytes) -> bytes:
    return _message(0x0C, bytes((qos << 5,)) + struct.pack(">HH", topic_id, msg_id) + data)


def disconnect(duration: int | None = None) -> bytes:
    """DISCONNECT; with a duration, the client goes to sleep (§6.14)."""
    return _message(0x18, b"" if duration is None else struct.pack(">H", duration))


class SnProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


@dataclass
class SnClient:
    name: str
    protocol: SnProtocol
    topic_id: int = 0
    acked: int = 0
    pending: set[int] = field(default_factory=set)

    def send(self, data: bytes) -> None:
        assert self.protocol.transport is not None
        self.protocol.transport.sendto(data)

    async def expect(self, msg_type: int, timeout: float = 10.0) -> bytes:
        while True:
            data = await asyncio.wait_for(self.protocol.queue.get(), timeout)
            if data[1] == msg_type:
                return data

    def close(self) -> None:
        if self.protocol.transport is not None:
            self.send(disconnect())  # frees its place in the gateway's max_clients
            self.protocol.transport.close()


async def open_client(port: int, name: str) -> SnClient:
    loop = asyncio.get_running_loop()
    _transport, protocol = await loop.create_datagram_endpoint(SnProtocol, remote_addr=(HOST, port))
    return SnClient(name, protocol)


async def connect_clients(port: int, n: int, prefix: str, *, topic: str | None) -> list[SnClient]:
    gate = asyncio.Semaphore(50)

    async def one(i: int) -> SnClient:
        async with gate:
            client = await open_client(port, f"{prefix}-{i:05d}")
            client.send(connect(client.name, 600))
            connack = await client.expect(0x05)
            if connack[2] != 0:
                raise BenchError(f"{client.name}: CONNACK return code {connack[2]}")
            if topic is not None:
                client.send(register(1, topic))
                regack = await client.expect(0x0B)
                client.topic_id = struct.unpack_from(">H", regack, 2)[0]
            return client

    return await asyncio.gather(*(one(i) for i in range(n)))


def reading(client: int, k: int) -> bytes:
    return json.dumps([f"c{client:03d}s{k % SERIES_PER_CLIENT}", T0 + k * 1_000_000, k % 100]).encode()


def stored_count(http_port: int, table: str) -> int:
    body = get_json(http_port, "/db/query?" + urlencode({"q": f"select count(*) from {table}"}))
    return int(body["data"]["rows"][0][0]) if body.get("success") else 0


def status_figure(http_port: int, name: str) -> int:
    """A counter of /api/status: cheap to read while the load runs (a count(*) scans the table, and polling it
    would cost the gateway as much CPU as the load it measures)."""
    return int(get_json(http_port, "/api/status")["status"][name])


@dataclass
class Figures:
    rate: float
    stored: int
    sent: int
    cpu_us: float
    received: int = 0  # datagrams the gateway read (the rest were lost in its socket buffer)


async def run_qos0(gateway: Broker, ports: dict[str, int], messages: int) -> Figures:
    clients = await connect_clients(ports["mqtt-sn"], CLIENTS, "q0", topic="db/append/SNBENCH0")
    per_client = messages // CLIENTS
    writes0 = await asyncio.to_thread(status_figure, ports["http"], "store_writes_total")
    received0 = await asyncio.to_thread(status_figure, ports["http"], "mqttsn_datagrams_received_total")
    cpu0 = proc_cpu_seconds(gateway.pid)
    started = time.monotonic()

    async def drive(index: int, client: SnClient) -> None:
        for k in range(per_client):
            client.send(publish(0, client.topic_id, 0, reading(index, k)))
            if k % 8 == 7:
                await asyncio.sleep(0)

    await asyncio.gather(*(drive(i, c) for i, c in enumerate(clients)))
    sent = per_client * CLIENTS
    # The store's write counter (readings plus a few catalog and rollup keys) tells when the gateway is done;
    # the table's count(*), read once at the end, how many readings it stored.
    written, last_growth, seen_at = 0, time.monotonic(), started
    while time.monotonic() - last_growth < 1.5:
        await asyncio.sleep(0.1)
        count = await asyncio.to_thread(status_figure, ports["http"], "store_writes_total") - writes0
        if count > written:
            written, last_growth, seen_at = count, time.monotonic(), time.monotonic()
    cpu = proc_cpu_seconds(gateway.pid) - cpu0
    stored = await asyncio.to_thread(stored_count, ports["http"], "SNBENCH0")
    received = await asyncio.to_thread(status_figure, ports["http"], "mqttsn_datagrams_received_total") - received0
    for client in clients:
        client.close()
    return Figures(stored / (seen_at - started), stored, sent, cpu / max(stored, 1) * 1e6, received)


async def run_qos1(gateway: Broker, ports: dict[str, int], messages: int) -> Figures:
    clients = await connect_clients(ports["mqtt-sn"], CLIENTS, "q1", topic="db/append/SNBENCH1")
    per_client = messages // CLIENTS
    cpu0 = proc_cpu_seconds(gateway.pid)
    started = time.monotonic()

    async def drive(index: int, client: SnClient) -> None:
        # Up to QOS1_WINDOW in flight; a PUBLISH or PUBACK lost on the way (UDP) is sent again with DUP after 1 s,
        # as a client does (§6.13).
        pending: dict[int, bytes] = {}
        sent = 0

        def send_next() -> None:
            nonlocal sent
            sent += 1
            pending[sent] = publish(1, client.topic_id, sent, reading(index, sent))
            client.send(pending[sent])

        while sent < min(QOS1_WINDOW, per_client):
            send_next()
        while pending:
            try:
                data = await client.expect(0x0D, timeout=1.0)
            except TimeoutError:
                for packet in pending.values():
                    client.send(packet[:2] + bytes((packet[2] | 0x80,)) + packet[3:])
                continue
            if data[6] != 0:
                raise BenchError(f"{client.name}: PUBACK return code {data[6]}")
            if pending.pop(struct.unpack_from(">H", data, 4)[0], None) is not None:
                client.acked += 1
                if sent < per_client:
                    send_next()

    await asyncio.gather(*(drive(i, c) for i, c in enumerate(clients)))
    elapsed = time.monotonic() - started
    cpu = proc_cpu_seconds(gateway.pid) - cpu0
    for client in clients:
        client.close()
    acked = sum(c.acked for c in clients)
    return Figures(acked / elapsed, acked, per_client * CLIENTS, cpu / max(acked, 1) * 1e6)


async def memory_per_client(gateway: Broker, ports: dict[str, int], n: int) -> tuple[float, float]:
    before = proc_rss_kib(gateway.pid)
    clients = await connect_clients(ports["mqtt-sn"], n, "idle", topic=None)
    await asyncio.sleep(0.5)
    connected = proc_rss_kib(gateway.pid)
    awake = list(clients)
    for _attempt in range(5):  # a datagram lost in the burst is sent again
        for k, client in enumerate(awake):
            client.send(disconnect(3600))
            if k % 50 == 49:
                await asyncio.sleep(0.01)
        answers = await asyncio.gather(*(c.expect(0x18, timeout=2) for c in awake), return_exceptions=True)
        awake = [c for c, answer in zip(awake, answers, strict=True) if isinstance(answer, BaseException)]
        if not awake:
            break
    if awake:
        raise BenchError(f"{len(awake)} clients were never told they may sleep")
    await asyncio.sleep(0.5)
    asleep = proc_rss_kib(gateway.pid)
    for k, client in enumerate(clients):
        client.close()  # gone for good: their places are free for the load runs
        if k % 50 == 49:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    return (connected - before) * 1024 / n, (asleep - before) * 1024 / n


async def bench_main(args: argparse.Namespace, workdir: Path, brokers: list[Broker]) -> int:
    print(machine_line())
    gateway = await start_gateway(workdir, args.gateway_cmd, brokers)
    match = ENDPOINTS_RE.search(gateway.log_path.read_text())
    assert match is not None
    ports = {name: int(addr.rsplit(":", 1)[1]) for name, addr in (i.split("=", 1) for i in match.group(1).split())}
    if "mqtt-sn" not in ports:
        raise BenchError("the gateway has no MQTT-SN listener")
    idle = proc_rss_kib(gateway.pid)
    # Memory first, in a fresh process: afterwards, memory freed by the load runs would be reused and hide it.
    per_connected, per_sleeper = await memory_per_client(gateway, ports, args.sleepers)
    qos0 = await run_qos0(gateway, ports, args.messages)
    qos1 = await run_qos1(gateway, ports, args.messages)
    rows = [
        ("idle RSS MiB", f"{idle / 1024:.1f}", ""),
        (f"QoS 0 publishes/s stored ({CLIENTS} clients)", f"{qos0.rate:,.0f}", f">= {TARGET_QOS0:,}"),
        ("    stored/sent", f"{qos0.stored:,}/{qos0.sent:,}", ""),
        ("    received by the gateway/sent", f"{qos0.received:,}/{qos0.sent:,}", ""),
        ("    gateway CPU µs per publish", f"{qos0.cpu_us:.1f}", ""),
        (f"QoS 1 publishes/s acknowledged = stored ({CLIENTS} clients)", f"{qos1.rate:,.0f}", ""),
        ("    acknowledged/sent", f"{qos1.stored:,}/{qos1.sent:,}", ""),
        ("    gateway CPU µs per publish", f"{qos1.cpu_us:.1f}", ""),
        (f"RSS per connected client, bytes ({args.sleepers:,} clients)", f"{per_connected:,.0f}", ""),
        ("RSS per sleeping client, bytes (nothing buffered)", f"{per_sleeper:,.0f}", f"<= {TARGET_SLEEPER_BYTES:,}"),
        ("gateway max RSS MiB", f"{proc_rss_kib(gateway.pid) / 1024:.1f}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'gateway':>15}  target")
    for label, value, target in rows:
        print(f"{label:<{width}}  {value:>15}  {target}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000, help="publishes per QoS run (default 50,000)")
    parser.add_argument("--sleepers", type=int, default=1000, help="clients for the memory figures (default 1,000)")
    parser.add_argument(
        "--gateway-cmd",
        help="command that starts the gateway instead (e.g. under cProfile); it must log its 'listening' line",
    )
    args = parser.parse_args()
    return run_bench(bench_main, args, "gateway-mqttsn-bench-")


if __name__ == "__main__":
    sys.exit(main())
