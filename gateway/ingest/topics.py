"""Ingest topics: which MQTT topics carry readings, and in what form (machbase-neo's grammar, plus ours).

    db/append/<TABLE>[:<format>[:<compress>]][?timeformat=<unit>&tz=<zone>]
    db/write/<TABLE>[:<format>[:<compress>]][?...]
    db/metrics/<TABLE>[:<compress>][?...]   InfluxDB line protocol (what telegraf sends)
    db/query                            a query, not readings
    sensors/<device>                    one JSON object of fields, into the sensors table

`format` is json (default), csv, ndjson or line; `compress` is gzip (default: none); both are case-insensitive.
Table names are letters, digits and underscores, start with a letter, have at most 40 characters and are
case-insensitive (upper-cased here). `<device>` is one topic level, not empty. The time options after `?` are for
MQTT 3.1.1 clients, which have no user properties; MQTT 5 clients may give format, compress, timeformat and tz as
user properties instead (`options_from_properties`), which take precedence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.ingest.payloads import TIME_FORMATS, PayloadError, time_zone

FORMATS = ("json", "csv", "ndjson", "line")
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}", re.ASCII)
_CHOICES = {"format": FORMATS, "compress": ("gzip",), "timeformat": TIME_FORMATS}
# What may follow the table name in each kind of topic, in order.
_TOPIC_OPTIONS = {"append": ("format", "compress"), "write": ("format", "compress"), "metrics": ("compress",)}


class TopicError(Exception):
    """An ingest topic (or its user properties) that cannot be used. `reason` says why, for the publisher."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IngestTopic:
    kind: str  # append, write, metrics, sensors or query
    table: str  # upper-case; "" for query
    fmt: str  # json, csv, ndjson or line
    compress: str | None
    device: str | None  # sensors only
    options: tuple[tuple[str, str], ...] = ()  # timeformat and tz given after `?`


def parse_topic(topic: str, *, sensors_prefix: str = "sensors/", sensors_table: str = "SENSORS") -> IngestTopic | None:
    """What the ingest topic `topic` asks for; None if it is not an ingest topic. Raises TopicError when it is one
    but its table name or options are wrong."""
    if topic == "db/query":
        return IngestTopic("query", "", "json", None, None)
    if topic.startswith("db/"):
        kind, _, spec = topic[3:].partition("/")
        return _write_topic(kind, spec) if kind in _TOPIC_OPTIONS else None
    if topic.startswith(sensors_prefix):
        device = topic[len(sensors_prefix) :]
        # Deeper topics under the prefix are left to ordinary subscribers.
        if device and "/" not in device:
            return IngestTopic("sensors", sensors_table, "json", None, device)
    return None


def options_from_properties(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The ingest options among MQTT 5 user properties: format, compress, timeformat, tz (keys lower-cased;
    values lower-cased except tz). Other properties are ignored; an unknown value raises TopicError."""
    options: dict[str, str] = {}
    for key, value in pairs:
        name = key.lower()
        if name not in ("format", "compress", "timeformat", "tz"):
            continue
        if name in options:
            raise TopicError(f"user property {name!r} is given twice; give it once")
        options[name] = _option(name, value)
    return options


def _write_topic(kind: str, spec: str) -> IngestTopic:
    spec, question, query = spec.partition("?")
    table, *values = spec.split(":")
    names = _TOPIC_OPTIONS[kind]
    if not _TABLE.fullmatch(table):
        raise TopicError(
            f"table name {table!r} in db/{kind}/{spec} is not valid: use letters, digits and underscores, "
            "starting with a letter, at most 40 characters"
        )
    if len(values) > len(names):
        form = "".join(f":<{name}>" for name in names)
        raise TopicError(f"too many options in db/{kind}/{spec}; the form is db/{kind}/<TABLE>{form}")
    options = {name: _option(name, value) for name, value in zip(names, values, strict=False)}
    fmt = "line" if kind == "metrics" else options.get("format", "json")
    return IngestTopic(
        kind, table.upper(), fmt, options.get("compress"), None, _time_options(query) if question else ()
    )


def _time_options(query: str) -> tuple[tuple[str, str], ...]:
    options: dict[str, str] = {}
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        name = name.lower()
        if name not in ("timeformat", "tz") or not equals:
            raise TopicError(
                f"unknown topic option {pair!r}: after '?' give timeformat=<unit> and/or tz=<zone>, joined by &"
            )
        if name in options:
            raise TopicError(f"topic option {name!r} is given twice; give it once")
        options[name] = _option(name, value)
    return tuple(sorted(options.items()))


def _option(name: str, value: str) -> str:
    if name == "tz":
        try:
            time_zone(value)
        except PayloadError as e:
            raise TopicError(e.reason) from None
        return value  # zone names are case-sensitive
    choices = _CHOICES[name]
    if value.lower() not in choices:
        raise TopicError(f"unknown {name} {value!r}; use one of {', '.join(choices)}")
    return value.lower()
