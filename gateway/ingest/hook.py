"""The broker's publish hook for ingest topics: parse the payload whole, store it durably, then let the broker
acknowledge. Nothing of a message with one bad row is stored.

A refused message is logged with the client id, counted, refused to an MQTT 5 publisher with reason code 0x99
and a reason string, and reported for every client, 3.1.1 ones too, as a JSON message on `db/reply/<client id>`
(or on the publish's MQTT 5 Response Topic): `{"success": false, "topic": ..., "reason": ..., "row": n}`.

A publish to `db/query` is a query, as in machbase-neo: `{"q": "SELECT ...", "format": "json"|"csv", "reply":
"<topic>"}`. The answer is published at QoS 1 on `reply`, else on the MQTT 5 Response Topic (with the Correlation
Data), else on `db/reply`; the query's own acknowledgement follows the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NoReturn

from gateway.ingest.payloads import (
    ParseOptions,
    PayloadError,
    Row,
    parse,
    parse_line_protocol,
    parse_sensor_object,
)
from gateway.ingest.topics import IngestTopic, TopicError, options_from_properties, parse_topic
from gateway.mqtt.broker import ClientInfo, PublishRejected
from gateway.mqtt.codec import Prop, Properties, Reason
from gateway.mqtt.session import Message
from gateway.mqtt.topics import topic_name_error
from gateway.store.database import StoreError, TimeSeriesStore
from gateway.store.writer import WriteFailed

REPLY_PREFIX = "db/reply/"
QUERY_REPLY = "db/reply"
# Answers a SELECT (text, format) with the bytes to publish; app.py gives the HTTP layer's, which owns the SQL.
QueryAnswerer = Callable[[str, str], bytes]


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
        answer_query: QueryAnswerer | None = None,
    ) -> None:
        self.store = store
        self._reply = reply
        self._answer_query = answer_query
        self.sensors_prefix = sensors_prefix
        self.sensors_table = sensors_table
        self.counters = IngestCounters()
        # Sensors publish to the same few topics over and over: their parse is kept (bounded).
        self._topics: dict[str, IngestTopic | None] = {}
        # The store batch the latest messages went into, what they count, and the future the broker waits on: the
        # batch's outcome as the broker understands it (PublishRejected, not the store's WriteFailed).
        self._batch: asyncio.Future[None] | None = None
        self._batch_counts = IngestCounters()
        self._outcome: asyncio.Future[None] | None = None

    async def __call__(self, message: Message, client: ClientInfo) -> None:
        future = self.submit(message, client)
        if future is not None:
            await asyncio.shield(future)  # shared with the rest of the batch: never cancel it

    def submit(self, message: Message, client: ClientInfo) -> asyncio.Future[None] | None:
        """Start storing a message without a task of its own (the broker's fast path): returns None when there is
        nothing to wait for, else a future, shared by every message of the same storage batch, that is done when
        the message is stored or fails with PublishRejected. A refused message raises PublishRejected at once."""
        try:
            topic = self._topic(message.topic)
            if topic is None:
                return None  # replies and other traffic under db/ are ordinary messages
            if topic.kind == "query":
                return asyncio.ensure_future(self._query(message))
            readings = self._parse(topic, message)
        except (TopicError, PayloadError) as exc:
            row = getattr(exc, "row", None)
            self._refuse(message, client, exc.reason, row, Reason.PAYLOAD_FORMAT_INVALID)
        try:
            batch = self.store.append_nowait(topic.table, readings, durable=message.qos > 0)
        except StoreError as exc:
            self._refuse(message, client, str(exc), None, Reason.UNSPECIFIED_ERROR)
        except WriteFailed as exc:  # the disk guard
            self.counters.rejected += 1
            raise _retry_later(exc) from exc
        if batch is not self._batch:
            self._batch, self._batch_counts, self._outcome = batch, IngestCounters(), batch.get_loop().create_future()
            batch.add_done_callback(partial(self._settle, self._outcome, self._batch_counts))
        self._batch_counts.messages += 1
        self._batch_counts.readings += len(readings)
        return self._outcome

    def _settle(self, outcome: asyncio.Future[None], counts: IngestCounters, batch: asyncio.Future[None]) -> None:
        """A storage batch is done: its messages are stored, or refused for the publisher to send again."""
        error = asyncio.CancelledError() if batch.cancelled() else batch.exception()
        if error is None:
            self.counters.messages += counts.messages
            self.counters.readings += counts.readings
            outcome.set_result(None)
        else:
            self.counters.rejected += counts.messages
            outcome.set_exception(_retry_later(error))

    async def _query(self, message: Message) -> None:
        reply_to = None
        try:
            request = json.loads(message.payload)
        except ValueError as exc:
            answer = _failure(f'the query is not JSON ({exc}): send {{"q": "SELECT ..."}}')
        else:
            reply = request.get("reply") if isinstance(request, dict) else None
            if isinstance(reply, str) and not topic_name_error(reply) and not reply.startswith("$"):
                reply_to = reply
            answer = await self._answer(request)
        self._answer_to(message, answer, 1, default=QUERY_REPLY, explicit=reply_to)

    def _answer_to(self, message: Message, payload: bytes, qos: int, *, default: str, explicit: str | None) -> None:
        """Publish an answer to `message`: on `explicit`, else its MQTT 5 Response Topic, else `default`; its
        Correlation Data goes back with it."""
        props: Properties = {}
        if Prop.CORRELATION_DATA in message.properties:
            props[Prop.CORRELATION_DATA] = message.properties[Prop.CORRELATION_DATA]
        topic = explicit or message.properties.get(Prop.RESPONSE_TOPIC) or default
        self._reply(Message(topic, payload, qos, False, props))

    async def _answer(self, request: object) -> bytes:
        if not isinstance(request, dict) or not isinstance(request.get("q"), str):
            return _failure('the query has no SQL: send {"q": "SELECT ...", "format": "json", "reply": "<topic>"}')
        if self._answer_query is None:
            return _failure("this gateway answers no queries over MQTT")
        fmt = request.get("format", "json")
        # Off the event loop: a long answer must not hold up every other client's readings.
        return await asyncio.to_thread(self._answer_query, request["q"], str(fmt).lower())

    def _topic(self, name: str) -> IngestTopic | None:
        """The parsed topic; raises TopicError for a malformed ingest topic (never cached)."""
        if name in self._topics:
            return self._topics[name]
        topic = parse_topic(name, sensors_prefix=self.sensors_prefix, sensors_table=self.sensors_table)
        if len(self._topics) >= 4096:
            self._topics.clear()
        self._topics[name] = topic
        return topic

    def _parse(self, topic: IngestTopic, message: Message) -> Sequence[Row]:
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
        self._answer_to(message, json.dumps(report).encode(), 0, default=REPLY_PREFIX + client.client_id, explicit=None)
        raise PublishRejected(reason, code)


def _failure(reason: str) -> bytes:
    return json.dumps({"success": False, "reason": reason}).encode()


def _retry_later(error: BaseException) -> PublishRejected:
    # The card may be full or failing: the client keeps the message and sends it again later.
    return PublishRejected(str(error), Reason.QUOTA_EXCEEDED, retry=True)
