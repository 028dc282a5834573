"""Log entries in, db/append messages out: what the upstream (a machbase-neo, or another gateway) stores as is."""

import gzip

import orjson
import pytest

from gateway.ingest.payloads import ParseOptions, parse
from gateway.store.arrivals import ROW, Arrival
from gateway.store.database import Table
from gateway.store.keys import TIME_SHIFT
from gateway.uplink.batches import DROPPED_TABLE, Format, make_chunk

S = 1_000_000_000


class FakeNames:
    """The store's catalogue: tables 1 (TEMP) and 2 (HUM); series 1-3 and 9 (of a table since dropped)."""

    tables = {1: Table("TEMP", 1, 0), 2: Table("HUM", 2, 0)}
    series = {1: "kitchen", 2: "garage", 3: "cellar"}

    def table_by_id(self, table_id: int) -> Table | None:
        return self.tables.get(table_id)

    def series_name(self, series_id: int) -> str | None:
        return self.series.get(series_id)


def entry(seq: int, table_id: int, rows: list[tuple[int, int, float]], arrival_ns: int = 0) -> Arrival:
    data = b"".join(ROW.pack(b"r", series, time_ns + TIME_SHIFT, value) for series, time_ns, value in rows)
    return Arrival(seq, table_id, arrival_ns, data)


def test_rows_go_per_table_in_arrival_order_as_neo_json() -> None:
    entries = [
        entry(7, 1, [(1, 5 * S, 21.5), (2, 1 * S, 19.0)], arrival_ns=123),
        entry(8, 2, [(3, 2 * S, 80.0)]),
        entry(9, 1, [(1, 0, -1.25)]),
    ]
    chunk = make_chunk(entries, FakeNames(), {}, Format(prefix="site1/"))
    assert chunk.end == 10 and chunk.oldest_ns == 123
    assert [(m.topic, orjson.loads(m.payload), m.count) for m in chunk.messages] == [
        ("site1/db/append/TEMP", [["kitchen", 5 * S, 21.5], ["garage", S, 19.0], ["kitchen", 0, -1.25]], 3),
        ("site1/db/append/HUM", [["cellar", 2 * S, 80.0]], 1),
    ]
    assert chunk.readings == {"TEMP": 3, "HUM": 1} and chunk.dropped == {}


def test_our_own_ingest_parser_reads_the_payload_back_exactly() -> None:
    """A hub gateway stores what a site gateway sends, nanoseconds and doubles unchanged."""
    rows = [(1, 1_700_000_000_123_456_789, 0.1), (2, 1_700_000_000_123_456_790, 1e300), (3, 1, -2.5e-308)]
    chunk = make_chunk([entry(1, 1, rows)], FakeNames(), {}, Format())
    (message,) = chunk.messages
    readings = parse(message.payload, "json", None, ParseOptions())
    assert [(r[0], r[1], r[2]) for r in readings] == [
        ("kitchen", 1_700_000_000_123_456_789, 0.1),
        ("garage", 1_700_000_000_123_456_790, 1e300),
        ("cellar", 1, -2.5e-308),
    ]


def test_gzip_sends_the_same_json_compressed_on_the_json_gzip_topic() -> None:
    chunk = make_chunk([entry(1, 1, [(1, i * S, float(i)) for i in range(200)])], FakeNames(), {}, Format(gzip=True))
    (message,) = chunk.messages
    assert message.topic == "db/append/TEMP:json:gzip"
    assert orjson.loads(gzip.decompress(message.payload)) == [["kitchen", i * S, float(i)] for i in range(200)]
    assert len(message.payload) < len(gzip.decompress(message.payload)) / 3


def test_a_table_of_more_rows_than_a_batch_goes_in_several_messages() -> None:
    chunk = make_chunk([entry(1, 1, [(1, i, 1.0) for i in range(25)])], FakeNames(), {}, Format(batch_size=10))
    assert [m.count for m in chunk.messages] == [10, 10, 5]
    assert [orjson.loads(m.payload)[0][1] for m in chunk.messages] == [0, 10, 20]


def test_messages_are_split_below_the_upstreams_maximum_packet_size() -> None:
    """MQTT 5 §3.2.2.3.6: the client must not send a packet larger than the server's Maximum Packet Size."""
    chunk = make_chunk(
        [entry(1, 1, [(1, i * S, float(i)) for i in range(100)])], FakeNames(), {}, Format(max_packet_size=1000)
    )
    assert len(chunk.messages) > 1
    assert all(len(m.payload) + len(m.topic) + 16 <= 1000 for m in chunk.messages)
    assert [row for m in chunk.messages for row in orjson.loads(m.payload)] == [
        ["kitchen", i * S, float(i)] for i in range(100)
    ]


def test_readings_past_retention_and_of_dropped_tables_are_counted_not_sent() -> None:
    entries = [
        entry(1, 1, [(1, 1 * S, 1.0), (1, 9 * S, 9.0)]),
        entry(2, 5, [(9, 1 * S, 1.0), (9, 2 * S, 2.0)]),  # table 5 was dropped
        entry(3, 2, [(3, 1 * S, 1.0)]),
    ]
    chunk = make_chunk(entries, FakeNames(), {"TEMP": 5 * S}, Format())
    assert [(m.topic, orjson.loads(m.payload)) for m in chunk.messages] == [
        ("db/append/TEMP", [["kitchen", 9 * S, 9.0]]),
        ("db/append/HUM", [["cellar", S, 1.0]]),
    ]
    assert chunk.dropped == {"TEMP": 1, DROPPED_TABLE: 2}
    assert chunk.readings == {"TEMP": 2, DROPPED_TABLE: 2, "HUM": 1}


def test_a_chunk_with_every_reading_dropped_has_no_message_but_still_moves_the_cursor() -> None:
    chunk = make_chunk([entry(4, 1, [(1, S, 1.0)])], FakeNames(), {"TEMP": 2 * S}, Format())
    assert chunk.messages == [] and chunk.end == 5 and chunk.dropped == {"TEMP": 1}


@pytest.mark.parametrize("prefix", ["", "site-7/", "tenants/acme/"])
def test_the_prefix_goes_before_db_append(prefix: str) -> None:
    assert Format(prefix=prefix).topic("T") == f"{prefix}db/append/T"
