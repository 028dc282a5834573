"""The bound on publishes waiting to be stored, on a whole gateway in this process (real broker, real RocksDB
store): the datagrams are handed to SnGateway.received directly, the way a transport would, all before the
store gets a turn, so the backlog fills in a way a timing-dependent socket test could not make certain."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.app import Gateway
from gateway.config import parse
from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode

T0 = 1_700_000_000_000_000_000
LIMIT = 4096  # [mqtt] max_backlog_bytes
ADDRESS = ("192.0.2.7", 50000)


def test_reading_pauses_at_the_backlog_then_congestion_beyond_twice_it_and_what_was_accepted_is_stored(
    tmp_path: Path,
) -> None:
    asyncio.run(_scenario(tmp_path))


async def _scenario(tmp_path: Path) -> None:
    config = parse(
        {
            "gateway": {"bind": "127.0.0.1", "data_dir": str(tmp_path)},
            "mqtt": {"port": 0, "max_backlog_bytes": LIMIT},
            "http": {"port": 0},
            "mqttsn": {"port": 0, "multicast": False},
        },
        "test",
    )
    gateway = Gateway(config)
    await gateway.start()
    try:
        sn = gateway.mqttsn
        assert sn is not None
        sent: list[codec.Message] = []
        sn._transport_send = lambda data, _address: sent.append(codec.decode(data))
        pauses: list[bool] = []
        sn._pause_reading = pauses.append
        sn.received(codec.encode(codec.Connect("heavy", 60)), ADDRESS)
        sn.received(codec.encode(codec.Register(0, 1, "db/append/SNHEAVY")), ADDRESS)
        regack = sent[-1]
        assert isinstance(regack, codec.RegAck)
        sent.clear()
        for k in range(1, 31):  # ~550 bytes each against the limit: beyond twice it well before the 30th
            reading = json.dumps(["load", T0 + k, k]).encode()
            sn.received(codec.encode(codec.Publish(regack.topic_id, k, reading, qos=1)), ADDRESS)
        assert pauses == [True]  # told to stop reading once, at the limit
        # §5.3.10: answered at once with "congestion", never stored; nothing else is answered before the store is.
        acks = [m for m in sent if isinstance(m, codec.PubAck)]
        assert acks and len(acks) == len(sent)
        assert {(m.topic_id, m.return_code) for m in acks} == {(regack.topic_id, ReturnCode.CONGESTION)}
        congested = [m.msg_id for m in acks]
        assert sn.stats.congested == len(congested)
        for _ in range(200):
            if len(sent) == 30:
                break
            await asyncio.sleep(0.01)
        accepted = [m.msg_id for m in sent if isinstance(m, codec.PubAck) and m.return_code == ReturnCode.ACCEPTED]
        assert sorted(accepted + congested) == list(range(1, 31))
        assert accepted == sorted(accepted)  # answered in arrival order
        assert pauses == [True, False]  # read again once the store caught up
        assert sn.backlog_bytes == 0
        assert [time - T0 for time, _value in gateway.store.scan("SNHEAVY", "load")] == accepted
    finally:
        await gateway.stop()
