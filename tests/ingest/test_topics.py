"""Ingest topics: the grammar of db/append, db/write, db/metrics, db/query and sensors/<device>."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.topics import FORMATS, IngestTopic, TopicError, options_from_properties, parse_topic

FUZZ = settings(derandomize=True, max_examples=1000, deadline=None)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("db/append/EXAMPLE", IngestTopic("append", "EXAMPLE", "json", None, None)),
        ("db/append/EXAMPLE:json", IngestTopic("append", "EXAMPLE", "json", None, None)),
        ("db/append/EXAMPLE:json:gzip", IngestTopic("append", "EXAMPLE", "json", "gzip", None)),
        ("db/append/EXAMPLE:csv", IngestTopic("append", "EXAMPLE", "csv", None, None)),
        ("db/write/EXAMPLE:csv", IngestTopic("write", "EXAMPLE", "csv", None, None)),
        ("db/write/EXAMPLE:csv:gzip", IngestTopic("write", "EXAMPLE", "csv", "gzip", None)),
        ("db/write/example:NDJSON:GZip", IngestTopic("write", "EXAMPLE", "ndjson", "gzip", None)),
        ("db/append/My_Table_2:line", IngestTopic("append", "MY_TABLE_2", "line", None, None)),
        ("db/append/t", IngestTopic("append", "T", "json", None, None)),
        ("db/append/" + "a" * 40, IngestTopic("append", "A" * 40, "json", None, None)),
        ("db/metrics/telegraf", IngestTopic("metrics", "TELEGRAF", "line", None, None)),
        ("db/metrics/telegraf:gzip", IngestTopic("metrics", "TELEGRAF", "line", "gzip", None)),
        ("db/query", IngestTopic("query", "", "json", None, None)),
        ("db/append/T?timeformat=S", IngestTopic("append", "T", "json", None, None, (("timeformat", "s"),))),
        (
            "db/write/T:csv:gzip?tz=Europe/Berlin&timeformat=rfc3339",
            IngestTopic("write", "T", "csv", "gzip", None, (("timeformat", "rfc3339"), ("tz", "Europe/Berlin"))),
        ),
        ("db/metrics/T?timeformat=ms", IngestTopic("metrics", "T", "line", None, None, (("timeformat", "ms"),))),
        ("sensors/kitchen", IngestTopic("sensors", "SENSORS", "json", None, "kitchen")),
        ("sensors/küche 2:a.b", IngestTopic("sensors", "SENSORS", "json", None, "küche 2:a.b")),
    ],
)
def test_ingest_topics(topic: str, expected: IngestTopic) -> None:
    assert parse_topic(topic) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "db",
        "db/",
        "db/reply",
        "db/query/x",
        "db/APPEND/EXAMPLE",
        "db/tql/x",
        "dbx/append/EXAMPLE",
        "/db/append/EXAMPLE",
        "home/kitchen/temp",
        "sensors/",
        "sensors/kitchen/temp",
        "Sensors/kitchen",
        "sensors",
        "$SYS/broker/uptime",
    ],
)
def test_other_topics_are_not_ingest_topics(topic: str) -> None:
    assert parse_topic(topic) is None


def test_sensors_prefix_and_table_are_configurable() -> None:
    topic = parse_topic("site/3/dev-1", sensors_prefix="site/3/", sensors_table="PLANT")
    assert topic == IngestTopic("sensors", "PLANT", "json", None, "dev-1")
    assert parse_topic("sensors/dev-1", sensors_prefix="site/3/") is None


TIME_OPTIONS_RULE = "after '?' give timeformat=<unit> and/or tz=<zone>, joined by &"
TABLE_RULE = "use letters, digits and underscores, starting with a letter, at most 40 characters"


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("db/append", f"table name '' in db/append/ is not valid: {TABLE_RULE}"),
        ("db/append/", f"table name '' in db/append/ is not valid: {TABLE_RULE}"),
        ("db/write/:csv", f"table name '' in db/write/:csv is not valid: {TABLE_RULE}"),
        ("db/append/1abc", f"table name '1abc' in db/append/1abc is not valid: {TABLE_RULE}"),
        ("db/append/_abc", f"table name '_abc' in db/append/_abc is not valid: {TABLE_RULE}"),
        ("db/append/a-b", f"table name 'a-b' in db/append/a-b is not valid: {TABLE_RULE}"),
        ("db/append/täble", f"table name 'täble' in db/append/täble is not valid: {TABLE_RULE}"),
        ("db/append/a/b", f"table name 'a/b' in db/append/a/b is not valid: {TABLE_RULE}"),
        ("db/metrics/a b", f"table name 'a b' in db/metrics/a b is not valid: {TABLE_RULE}"),
        ("db/append/" + "a" * 41, f"table name '{'a' * 41}' in db/append/{'a' * 41} is not valid: {TABLE_RULE}"),
        ("db/append/T:xml", "unknown format 'xml'; use one of json, csv, ndjson, line"),
        ("db/append/T:", "unknown format ''; use one of json, csv, ndjson, line"),
        ("db/append/T::gzip", "unknown format ''; use one of json, csv, ndjson, line"),
        ("db/append/T:csv:zip", "unknown compress 'zip'; use one of gzip"),
        ("db/append/T:csv:", "unknown compress ''; use one of gzip"),
        (
            "db/write/T:csv:gzip:x",
            "too many options in db/write/T:csv:gzip:x; the form is db/write/<TABLE>:<format>:<compress>",
        ),
        ("db/metrics/T:csv", "unknown compress 'csv'; use one of gzip"),
        ("db/metrics/T:gzip:x", "too many options in db/metrics/T:gzip:x; the form is db/metrics/<TABLE>:<compress>"),
        ("db/append/T?format=csv", f"unknown topic option 'format=csv': {TIME_OPTIONS_RULE}"),
        ("db/append/T?timeformat", f"unknown topic option 'timeformat': {TIME_OPTIONS_RULE}"),
        ("db/append/T?", f"unknown topic option '': {TIME_OPTIONS_RULE}"),
        ("db/append/T?tz=UTC&tz=UTC", "topic option 'tz' is given twice; give it once"),
        ("db/append/T?timeformat=h", "unknown timeformat 'h'; use one of ns, us, ms, s, rfc3339, default"),
    ],
)
def test_bad_ingest_topics(topic: str, reason: str) -> None:
    with pytest.raises(TopicError) as info:
        parse_topic(topic)
    assert info.value.reason == reason
    assert str(info.value) == reason


def test_options_from_properties() -> None:
    pairs = [
        ("Format", "CSV"),
        ("reply", "db/reply/1"),
        ("COMPRESS", "gzip"),
        ("method", "append"),
        ("TimeFormat", "MS"),
        ("tz", "Europe/Berlin"),
    ]
    assert options_from_properties(pairs) == {
        "format": "csv",
        "compress": "gzip",
        "timeformat": "ms",
        "tz": "Europe/Berlin",
    }
    assert options_from_properties([]) == {}
    assert options_from_properties([("header", "skip"), ("tz", "UTC")]) == {"tz": "UTC"}


@pytest.mark.parametrize("value", ["ns", "us", "ms", "s", "rfc3339", "default", "RFC3339"])
def test_every_time_format_is_a_property_value(value: str) -> None:
    assert options_from_properties([("timeformat", value)]) == {"timeformat": value.lower()}


@pytest.mark.parametrize(
    ("pairs", "reason"),
    [
        ([("format", "xml")], "unknown format 'xml'; use one of json, csv, ndjson, line"),
        ([("compress", "zstd")], "unknown compress 'zstd'; use one of gzip"),
        ([("timeformat", "2006-01-02")], "unknown timeformat '2006-01-02'; use one of ns, us, ms, s, rfc3339, default"),
        ([("tz", "Local")], "unknown time zone 'Local'; use an IANA name such as Europe/Berlin, or UTC"),
        (
            [("tz", "europe/berlin")],
            "unknown time zone 'europe/berlin'; use an IANA name such as Europe/Berlin, or UTC",
        ),
        ([("format", "csv"), ("FORMAT", "csv")], "user property 'format' is given twice; give it once"),
    ],
)
def test_bad_properties(pairs: list[tuple[str, str]], reason: str) -> None:
    with pytest.raises(TopicError) as info:
        options_from_properties(pairs)
    assert info.value.reason == reason


TABLES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,39}", fullmatch=True)


@FUZZ
@given(topic=st.text(max_size=40) | st.text(alphabet="db/apenwritmcsq:jonlgzx_A1", max_size=40))
def test_fuzz_topics(topic: str) -> None:
    try:
        parsed = parse_topic(topic)
    except TopicError as e:
        assert e.reason
        return
    if parsed is not None:
        assert parsed.kind in ("append", "write", "metrics", "sensors", "query")
        assert parsed.fmt in FORMATS
        assert parsed.compress in (None, "gzip")
        assert parsed.table == parsed.table.upper()
        assert (parsed.device is not None) == (parsed.kind == "sensors")


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["append", "write"]),
    table=TABLES,
    fmt=st.sampled_from(FORMATS),
    compress=st.sampled_from([None, "gzip"]),
)
def test_topics_round_trip(kind: str, table: str, fmt: str, compress: str | None) -> None:
    topic = f"db/{kind}/{table}:{fmt}" + (f":{compress}" if compress else "")
    assert parse_topic(topic) == IngestTopic(kind, table.upper(), fmt, compress, None)
