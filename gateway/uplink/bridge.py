"""The topic bridge: local messages matching chosen filters go up as they are published, like mosquitto's
`topic <filter> out` lines.

The bridge is a persistent session of the local broker (client id `$uplink`), subscribed at QoS 1: while the
upstream is away the broker queues its messages, within [mqtt] max_queued_messages, as for any offline client,
and a message leaves the queue only once the upstream acknowledged it.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from gateway.mqtt.broker import Broker
from gateway.mqtt.codec import Subscription
from gateway.mqtt.session import NEVER_EXPIRES, Delivery, Session
from gateway.uplink.client import UpstreamClient

log = logging.getLogger("gateway.uplink")
CLIENT_ID = "$uplink"


class Bridge:
    """The bridge's session and the Outlet it sends through: the upstream connection, when there is one."""

    def __init__(self, broker: Broker, filters: list[str], prefix: str, window: int) -> None:
        self.prefix = prefix
        self.receive_maximum = window
        self.sent = 0
        self._client: UpstreamClient | None = None
        self._session: Session | None = None
        self._broker = broker
        self.filters = filters

    def start(self) -> None:
        """Attach to the session (kept from the last run with its queue) and subscribe to the filters."""
        broker = self._broker
        if not self.filters:
            if CLIENT_ID in broker.sessions:  # the bridge was configured before: its queue has nowhere to go
                session, _ = broker.attach(CLIENT_ID, True, 0, None)
                broker.detach(session, None, 0)
            return
        session, _present = broker.attach(CLIENT_ID, False, NEVER_EXPIRES, None)
        for topic_filter in list(session.subscriptions):
            if topic_filter not in self.filters:
                broker.unsubscribe(session, topic_filter)
        for topic_filter in self.filters:
            code, _new = broker.subscribe(session, Subscription(topic_filter, qos=1), None)
            if code >= 0x80:
                log.warning("uplink bridge: the local broker refused %r (reason 0x%02X)", topic_filter, code)
        broker.save_subscriptions(session)
        self._session = session

    @property
    def queued(self) -> int:
        session = self._session
        if session is None:
            return 0
        return len(session.queue or ()) + len(session.inflight)

    def connected(self, client: UpstreamClient) -> None:
        if self._session is None:
            return
        self._client = client
        self._session.connection = self
        self._session.resend_inflight()

    def disconnected(self) -> None:
        self._client = None
        if self._session is not None and self._session.connection is self:
            self._session.connection = None

    # -- Outlet, for the broker session ---------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return self._client is not None and not self._client.closed

    def send_publish(self, delivery: Delivery, dup: bool) -> bool:
        client = self._client
        assert client is not None
        message = delivery.message
        try:
            future = client.publish(self.prefix + message.topic, message.payload, delivery.qos, delivery.retain)
        except ValueError as exc:  # larger than the upstream takes
            log.warning("uplink bridge: %s is not sent up: %s", message.topic, exc)
            return False
        self.sent += 1
        if delivery.qos:
            future.add_done_callback(partial(self._acknowledged, delivery.packet_id))
        return True

    def send_pubrel(self, packet_id: int) -> None:
        """Never called: the bridge subscribes at QoS 1."""

    def taken_over(self) -> None:
        log.warning("a client connected with the uplink bridge's client id %s and took its session", CLIENT_ID)
        self._client = None
        self._session = None

    def _acknowledged(self, packet_id: int, future: asyncio.Future[int]) -> None:
        session = self._session
        if future.cancelled() or future.exception() is not None or session is None or session.connection is not self:
            return  # the connection ended: the message stays in flight and goes again on the next one
        session.acknowledged(packet_id, 1)
