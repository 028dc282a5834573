"""The broker's publish hook for ingest topics: parse the payload whole, store it durably, then let the broker
acknowledge. Nothing of a message with one bad row is stored.

A refused message is logged with the client id, counted, refused to an MQTT 5 publisher with reason code 0x99
and a reason string, and reported for every client, 3.1.1 ones too, as a JSON message on `db/reply/<client id>`
(or on the publish's MQTT 5 Response Topic): `{"success": false, "topic": ..., "reason": ..., "row": n}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from gateway.ingest.payloads import (
    ParseOptions,
    PayloadError,
    Reading,
    parse,
    parse_line_protocol,
    parse_sensor_object,
)
from gateway.ingest.topics import IngestTopic, TopicError, options_from_properties, parse_topic
from gateway.mqtt.broker import ClientInfo, PublishRejected
from gateway.mqtt.codec import Prop, Properties, Reason
from gateway.mqtt.session import Message
from gateway.store.database import StoreError, TimeSeriesStore
from gateway.store.writer import WriteFailed

REPLY_PREFIX = "db/reply/"


@dataclass(slots=True)
class IngestCounters:
    messages: int = 0
    readings: int = 0
    rejected: int = 0


class IngestHook:
    """Awaited by the broker for every publish on `db/#` and on the sensors prefix."""

    def __init__(
        self,
        store: TimeSeriesStore,
        reply: Callable[[Message], None],
        *,
        sensors_prefix: str = "sensors/",
        sensors_table: str = "SENSORS",
    ) -> None:
        self.store = store
        self._reply = reply
        self.sensors_prefix = sensors_prefix
        self.sensors_table = sensors_table
        self.counters = IngestCounters()
        # Sensors publish to the same few topics over and over: their parse is kept (bounded).
        self._topics: dict[str, IngestTopic | None] = {}

    async def __call__(self, message: Message, client: ClientInfo) -> None:
        try:
            topic = self._topic(message.topic)
            if topic is None or topic.kind == "query":
                return  # replies and other traffic under db/ are ordinary messages (db/query: a later issue)
            readings = self._parse(topic, message)
        except (TopicError, PayloadError) as exc:
            row = getattr(exc, "row", None)
            self._refuse(message, client, exc.reason, row, Reason.PAYLOAD_FORMAT_INVALID)
        try:
            await self.store.append(
                topic.table, [(r.name, r.time_ns, r.value) for r in readings], durable=message.qos > 0
            )
        except StoreError as exc:
            self._refuse(message, client, str(exc), None, Reason.UNSPECIFIED_ERROR)
        except WriteFailed as exc:
            # The card may be full or failing: the client keeps the message and sends it again later.
            self.counters.rejected += 1
            raise PublishRejected(str(exc), Reason.QUOTA_EXCEEDED, retry=True) from exc
        self.counters.messages += 1
        self.counters.readings += len(readings)

    def _topic(self, name: str) -> IngestTopic | None:
        """The parsed topic; raises TopicError for a malformed ingest topic (never cached)."""
        if name in self._topics:
            return self._topics[name]
        topic = parse_topic(name, sensors_prefix=self.sensors_prefix, sensors_table=self.sensors_table)
        if len(self._topics) >= 4096:
            self._topics.clear()
        self._topics[name] = topic
        return topic

    def _parse(self, topic: IngestTopic, message: Message) -> list[Reading]:
        settings = dict(topic.options)
        settings.update(options_from_properties(message.properties.get(Prop.USER_PROPERTY, [])))
        options = ParseOptions(
            time_format=settings.get("timeformat", "ns"), tz=settings.get("tz"), now_ns=time.time_ns()
        )
        compress = settings.get("compress", topic.compress)
        if topic.kind == "sensors":
            assert topic.device is not None
            return parse_sensor_object(topic.device, message.payload, options)
        if topic.kind == "metrics":
            return parse_line_protocol(message.payload, compress, options)
        return parse(message.payload, settings.get("format", topic.fmt), compress, options)

    def _refuse(self, message: Message, client: ClientInfo, reason: str, row: int | None, code: int) -> NoReturn:
        self.counters.rejected += 1  # the broker logs the refusal with the client id and the reason
        report = {"success": False, "topic": message.topic, "reason": reason, "row": row}
        reply_to = message.properties.get(Prop.RESPONSE_TOPIC) or REPLY_PREFIX + client.client_id
        props: Properties = {}
        if Prop.CORRELATION_DATA in message.properties:
            props[Prop.CORRELATION_DATA] = message.properties[Prop.CORRELATION_DATA]
        self._reply(Message(reply_to, json.dumps(report).encode(), 0, False, props))
        raise PublishRejected(reason, code)
