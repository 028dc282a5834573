"""Routing: sessions, subscriptions, retained messages, wills, shared subscriptions and the publish hooks.

The broker owns every session and knows nothing of sockets: connections (connection.py, and later the MQTT-SN
gateway) attach to sessions and hand it messages. Publish hooks let the gateway make a message durable before the
publisher is acknowledged: they are awaited by whoever received the message, and the message is routed only after
they succeed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from gateway import __version__
from gateway.activity import Activity
from gateway.mqtt.auth import Authorizer
from gateway.mqtt.codec import Prop, Reason, Subscription
from gateway.mqtt.persist import BrokerState, SessionRecord
from gateway.mqtt.session import NEVER_EXPIRES, Message, Outlet, Session, SubOptions
from gateway.mqtt.topics import MAX_CACHED_TOPIC, SubscriptionTree, filter_error, filter_matches, split_shared

log = logging.getLogger("gateway.mqtt")

SYS_PREFIX = "$SYS/broker/"


class PublishRejected(Exception):
    """Raised by a publish hook to refuse a message.

    `retry` says whether the same message may succeed later (storage full or failing) or never will (a payload
    that does not parse). MQTT 5 publishers always get the reason code and text; see connection.py for 3.1.1.
    """

    def __init__(self, reason: str, reason_code: int = Reason.PAYLOAD_FORMAT_INVALID, *, retry: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reason_code = reason_code
        self.retry = retry


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who published a message, for hooks and logs."""

    client_id: str
    username: str | None
    protocol: str  # "mqtt" or "mqtt-sn"
    peer: str


PublishHook = Callable[[Message, ClientInfo], Awaitable[None]]


@dataclass(slots=True)
class BrokerSettings:
    max_queued_messages: int = 1000
    queue_qos0_messages: bool = False
    max_session_expiry: int = NEVER_EXPIRES
    retain_available: bool = True
    sys_interval: float = 10.0
    max_subscriptions: int = 1000
    max_queued_bytes: int = 8 << 20
    max_retained_bytes: int = 32 << 20


class Stats:
    """Counters for $SYS and the status page; plain attributes, incremented on hot paths."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "clients_connected",
        "clients_maximum",
        "connections_refused",
        "messages_dropped",
        "messages_received",
        "messages_sent",
        "protocol_errors",
        "publish_rejected",
        "started_at",
    )

    def __init__(self) -> None:
        self.started_at = time.time()
        self.clients_connected = 0
        self.clients_maximum = 0
        self.connections_refused = 0
        self.messages_received = 0
        self.messages_sent = 0
        self.messages_dropped = 0
        self.publish_rejected = 0
        self.protocol_errors = 0
        self.bytes_received = 0
        self.bytes_sent = 0


Subscriber = tuple[Session, SubOptions]


class Broker:
    def __init__(
        self,
        settings: BrokerSettings,
        authorizer: Authorizer,
        state: BrokerState | None = None,
        activity: Activity | None = None,
    ) -> None:
        self.settings = settings
        self.authorizer = authorizer
        self.state = state
        self.stats = Stats()
        # Who has been seen and what was refused, as the connections and the MQTT-SN gateway tell it.
        self.activity = activity if activity is not None else Activity()
        self.sessions: dict[str, Session] = {}
        # Sessions whose client is away for now but still holds them: MQTT-SN clients asleep (§6.14).
        self.sleepers: dict[str, Outlet] = {}
        self.retained: dict[str, Message] = {}
        self._tree: SubscriptionTree[Subscriber] = SubscriptionTree()
        self._hooks: list[tuple[str, PublishHook]] = []
        self._hook_cache: dict[str, tuple[PublishHook, ...]] = {}
        self._share_turn: dict[tuple[str, str], int] = {}
        self._pending_wills: dict[str, tuple[asyncio.TimerHandle, Message]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self._retained_bytes = 0
        if state is not None:
            state.on_dirty = self._schedule_flush

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.state is not None:
            self._load_state(self.state)
        self._ticker = asyncio.create_task(self._tick_forever(), name="broker-ticker")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for handle, _will in self._pending_wills.values():
            handle.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.state is not None:
            now = time.time()
            for session in self.sessions.values():
                if session.persistent and session.connection is not None:
                    session.disconnected_at = now
                    self._save_session(session)
            self.state.close()

    def _load_state(self, state: BrokerState) -> None:
        for message in state.retained():
            self.retained[message.topic] = message
            self._retained_bytes += len(message.payload)
        for record in state.sessions():
            session = self._new_session(record.client_id, record.expiry_interval)
            session.username = record.username
            # Time spent stopped counts towards expiry: the restart is when we last saw the client, at the latest.
            session.disconnected_at = record.disconnected_at or time.time()
            for topic_filter, options in record.subscriptions.items():
                session.subscriptions[topic_filter] = options
                self._tree.add(topic_filter, session.client_id, (session, options))
            for delivery in state.deliveries(record.client_id):
                session.restore(delivery)
            for packet_id in state.incoming_qos2(record.client_id):
                session.incoming_qos2[packet_id] = None
            self.sessions[session.client_id] = session
        for client_id, due, will in state.wills():
            self._schedule_will(client_id, will, due)
        if self.sessions or self.retained:
            log.info("restored %d sessions and %d retained messages", len(self.sessions), len(self.retained))

    def _new_session(self, client_id: str, expiry_interval: int) -> Session:
        return Session(
            client_id,
            expiry_interval,
            self.settings.max_queued_messages,
            self.stats,
            max_queued_bytes=self.settings.max_queued_bytes,
            queue_qos0=self.settings.queue_qos0_messages,
            store=self.state if expiry_interval and self.state is not None else None,
        )

    # -- sessions -----------------------------------------------------------------------------------------------

    def take_over(self, client_id: str) -> None:
        """§3.1.4: a new connection claims `client_id`; whoever holds its session, connected or asleep, lets go.
        Before `attach`."""
        existing = self.sessions.get(client_id)
        if existing is not None and existing.connection is not None:
            existing.connection.taken_over()  # an MQTT connection or an MQTT-SN client
        sleeper = self.sleepers.pop(client_id, None)
        if sleeper is not None:
            sleeper.taken_over()

    def attach(
        self, client_id: str, clean_start: bool, expiry_interval: int, username: str | None
    ) -> tuple[Session, bool]:
        """Find or create the session for a client that just connected; returns it and whether it was present.

        A connection already attached to the session must have been detached by the caller (takeover).
        """
        expiry_interval = min(expiry_interval, self.settings.max_session_expiry)
        self._take_pending_will(client_id)  # §3.1.3.2.2: a new connection within the will delay means no will
        session = self.sessions.get(client_id)
        if session is not None and session.username != username:
            # A session belongs to the user who made it: another user reusing the client id must not receive
            # what was queued for the first (their ACLs may differ), so it starts afresh.
            log.info("client %s: connecting as another user than its session's; the session starts afresh", client_id)
            clean_start = True
        present = session is not None and not clean_start
        if session is not None and clean_start:
            self._end_session(session)
            session = None
        if session is None:
            session = self._new_session(client_id, expiry_interval)
            self.sessions[client_id] = session
        else:
            self.set_expiry(session, expiry_interval)
        session.username = username
        session.disconnected_at = None
        self._save_session(session)
        return session, present

    def set_expiry(self, session: Session, expiry_interval: int) -> None:
        """Change how long a session outlives its connection; one that no longer does leaves the state store."""
        session.expiry_interval = min(expiry_interval, self.settings.max_session_expiry)
        if not session.persistent and session.store is not None:
            session.store = None
            if self.state is not None:
                self.state.delete_session(session.client_id)
        elif session.persistent and session.store is None:
            session.store = self.state

    def rejected(self, client: ClientInfo, topic: str, reason: str) -> None:
        """A publish was refused (ACL, a bad ingest payload, a full disk): counted, and kept for the Errors view."""
        self.stats.publish_rejected += 1
        self.activity.rejected(client.client_id, client.protocol, client.peer, topic, reason)

    def detach(self, session: Session, will: Message | None, will_delay: int) -> None:
        """The session's connection is gone. Publishes (or schedules) the will; ends a non-persistent session."""
        self.activity.gone(session.client_id)
        session.connection = None
        session.disconnected_at = time.time()
        if will is not None:
            delay = min(will_delay, session.expiry_interval)
            if delay <= 0:
                self.publish_internal(will)
            else:
                self._schedule_will(session.client_id, will, time.time() + delay)
        if session.persistent:
            self._save_session(session)
        else:
            self._end_session(session)

    def _schedule_will(self, client_id: str, will: Message, due: float) -> None:
        """Publish `will` at wall-clock time `due`; kept in the state store, so a restart does not lose it."""
        delay = max(0.0, due - time.time())
        handle = asyncio.get_running_loop().call_later(delay, self._fire_will, client_id)
        self._pending_wills[client_id] = (handle, will)
        if self.state is not None:
            self.state.put_will(client_id, will, due)

    def _take_pending_will(self, client_id: str) -> Message | None:
        pending = self._pending_wills.pop(client_id, None)
        if pending is None:
            return None
        pending[0].cancel()
        if self.state is not None:
            self.state.delete_will(client_id)
        return pending[1]

    def _fire_will(self, client_id: str) -> None:
        will = self._take_pending_will(client_id)
        if will is not None:
            self.publish_internal(will)

    @staticmethod
    def _will_as_published(will: Message) -> Message:
        """§3.1.3.2.4: a will's Message Expiry Interval counts from when the will is published."""
        interval = will.properties.get(Prop.MESSAGE_EXPIRY_INTERVAL)
        if interval is None:
            return will
        props = {k: v for k, v in will.properties.items() if k != Prop.MESSAGE_EXPIRY_INTERVAL}
        return Message(will.topic, will.payload, will.qos, will.retain, props, time.time() + interval, will.sender)

    def _end_session(self, session: Session) -> None:
        for topic_filter in session.subscriptions:
            self._tree.remove(topic_filter, session.client_id)
        session.subscriptions.clear()
        session.discard_messages()
        session.incoming_qos2.clear()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if self.state is not None:
            self.state.delete_session(session.client_id)
        will = self._take_pending_will(session.client_id)
        if will is not None:
            # §3.1.3.2.2: the will is sent when the session ends, if its delay has not passed yet.
            self.publish_internal(will)

    def _save_session(self, session: Session) -> None:
        if self.state is not None and session.persistent:
            self.state.put_session(
                SessionRecord(
                    session.client_id,
                    session.expiry_interval,
                    session.subscriptions,
                    session.disconnected_at,
                    session.username,
                )
            )

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_state)

    def flush_state(self) -> None:
        """Write what sessions and retained messages gathered; connections call it before sending any
        acknowledgement, so that nothing the broker acknowledged is only in memory."""
        self._flush_scheduled = False
        if self.state is not None:
            self.state.flush()

    def expire_sessions(self, now: float) -> None:
        for session in [s for s in self.sessions.values() if s.expired(now)]:
            log.info("session of %s expired after %d s offline", session.client_id, session.expiry_interval)
            self._end_session(session)

    # -- subscriptions ------------------------------------------------------------------------------------------

    def may_publish(self, username: str | None, client_id: str, topic: str) -> bool:
        """Whether a client may publish to `topic` (the ACL; $SYS is the broker's own: a client publishing there
        could fake the statistics others rely on)."""
        if topic.startswith("$SYS"):
            return False
        authorizer = self.authorizer
        return authorizer.acl is None or authorizer.may_write(username, client_id, topic)

    def subscribe(self, session: Session, sub: Subscription, identifier: int | None) -> tuple[int, bool]:
        """Returns (reason code for SUBACK, whether the subscription is new). The caller saves the session once
        for the whole SUBSCRIBE packet (`save_subscriptions`)."""
        error = filter_error(sub.topic_filter)
        if error is not None:
            log.info("client %s: refused subscription to %r: %s", session.client_id, sub.topic_filter, error)
            return Reason.TOPIC_FILTER_INVALID, False
        if not self.authorizer.may_subscribe(session.username, session.client_id, split_shared(sub.topic_filter)[1]):
            log.info("client %s: subscription to %r denied by the ACL", session.client_id, sub.topic_filter)
            return Reason.NOT_AUTHORIZED, False
        limit = self.settings.max_subscriptions
        if len(session.subscriptions) >= limit and sub.topic_filter not in session.subscriptions:
            log.info(
                "client %s: refused subscription to %r: it already has %d",
                session.client_id,
                sub.topic_filter[:100],
                limit,
            )
            return Reason.QUOTA_EXCEEDED, False
        options = SubOptions(sub.qos, sub.no_local, sub.retain_as_published, sub.retain_handling, identifier)
        new = self._tree.add(sub.topic_filter, session.client_id, (session, options))
        session.subscriptions[sub.topic_filter] = options
        return sub.qos, new

    def save_subscriptions(self, session: Session) -> None:
        self._save_session(session)

    def send_retained(self, session: Session, topic_filter: str, new: bool) -> None:
        """Deliver the retained messages a fresh subscription asked for (§3.3.1.3), after its SUBACK."""
        options = session.subscriptions.get(topic_filter)
        group, plain = split_shared(topic_filter)
        if options is None or group is not None:  # §4.8.2: no retained messages for shared subscriptions
            return
        if options.retain_handling == 2 or (options.retain_handling == 1 and not new):
            return
        identifiers = options.identifiers
        now = time.time()
        if "+" in plain or "#" in plain:
            candidates = list(self.retained.items())
        else:
            exact = self.retained.get(plain)
            candidates = [(plain, exact)] if exact is not None else []
        for topic, message in candidates:
            if message.expires_at is not None and message.expires_at <= now:
                self._delete_retained(topic)
                continue
            if filter_matches(plain, topic) and self.authorizer.may_read(session.username, session.client_id, topic):
                session.deliver(message, min(message.qos, options.qos), True, identifiers)

    def unsubscribe(self, session: Session, topic_filter: str) -> int:
        """The caller saves the session once for the whole UNSUBSCRIBE packet (`save_subscriptions`)."""
        if session.subscriptions.pop(topic_filter, None) is None:
            return Reason.NO_SUBSCRIPTION_EXISTED
        self._tree.remove(topic_filter, session.client_id)
        return Reason.SUCCESS

    # -- publishing ---------------------------------------------------------------------------------------------

    def add_publish_hook(self, topic_filter: str, hook: PublishHook) -> None:
        """Have `hook` awaited for every message published to a topic matching `topic_filter`, before the
        publisher is acknowledged and before the message is routed."""
        error = filter_error(topic_filter)
        if error is not None:
            raise ValueError(f"publish hook filter {topic_filter!r}: {error}")
        self._hooks.append((topic_filter, hook))
        self._hook_cache.clear()

    def hooks_for(self, topic: str) -> tuple[PublishHook, ...]:
        hooks = self._hook_cache.get(topic)
        if hooks is None:
            hooks = tuple(h for f, h in self._hooks if filter_matches(f, topic))
            if len(self._hook_cache) >= 4096:
                self._hook_cache.clear()
            if len(topic) <= MAX_CACHED_TOPIC:
                self._hook_cache[topic] = hooks
        return hooks

    async def run_hooks(self, message: Message, client: ClientInfo) -> None:
        for hook in self.hooks_for(message.topic):
            await hook(message, client)

    def start_hooks(self, message: Message, client: ClientInfo) -> asyncio.Future[None] | None:
        """Start the hooks of a message; the future (None: nothing to wait for) is done when they are, and fails
        with PublishRejected when one refuses the message. A single hook with a method
        `submit(message, client) -> Future | None` (raising PublishRejected to refuse at once) is started without a
        task of its own: its future may be shared by many messages, so it must never be cancelled."""
        hooks = self.hooks_for(message.topic)
        submit = getattr(hooks[0], "submit", None) if len(hooks) == 1 else None
        if submit is None:
            return asyncio.ensure_future(self.run_hooks(message, client))
        try:
            future: asyncio.Future[None] | None = submit(message, client)
        except PublishRejected as exc:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        return future

    def publish_internal(self, message: Message) -> None:
        """Publish a will, which has no publisher waiting for an acknowledgement: hooks run in a task the broker
        owns, then the message is routed."""
        message = self._will_as_published(message)
        if not self.hooks_for(message.topic):
            self.route(message)
            return
        client = ClientInfo(message.sender or "", None, "broker", "")
        task = asyncio.create_task(self._publish_after_hooks(message, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_after_hooks(self, message: Message, client: ClientInfo) -> None:
        try:
            await self.run_hooks(message, client)
        except PublishRejected as exc:
            self.rejected(client, message.topic, exc.reason)
            log.warning("will of %s on %r rejected: %s", client.client_id, message.topic, exc.reason)
            return
        self.route(message)

    def route(self, message: Message) -> None:
        """Deliver a message to every matching subscription and keep it if retained."""
        self.stats.messages_received += 1
        if message.retain:
            self._set_retained(message)
        match = self._tree.match(message.topic)
        subscribers = match.subscribers
        if len(subscribers) == 1 and not match.groups:
            session, options = subscribers[0]
            self._deliver_one(message, session, options.qos, options, options.identifiers)
            return
        if subscribers:
            self._deliver_overlapping(message, subscribers)
        for key, members in match.groups:
            self._deliver_shared(message, key, members)

    def _deliver_one(
        self, message: Message, session: Session, qos: int, options: SubOptions, identifiers: list[int]
    ) -> None:
        if options.no_local and message.sender == session.client_id:
            return
        if not self.authorizer.may_read(session.username, session.client_id, message.topic):
            return
        retain = message.retain and options.retain_as_published
        session.deliver(message, min(message.qos, qos), retain, identifiers)

    def _deliver_overlapping(self, message: Message, subscribers: Iterable[Subscriber]) -> None:
        # A client whose filters overlap gets the message once, at the highest QoS granted, with every
        # subscription identifier (§3.3.4).
        best: dict[str, tuple[Session, int, SubOptions, list[int]]] = {}
        for session, options in subscribers:
            if options.no_local and message.sender == session.client_id:
                continue
            entry = best.get(session.client_id)
            ids = options.identifiers
            if entry is None:
                best[session.client_id] = (session, options.qos, options, ids)
            else:
                keep = options if options.retain_as_published else entry[2]
                best[session.client_id] = (session, max(entry[1], options.qos), keep, entry[3] + ids)
        for session, qos, options, ids in best.values():
            self._deliver_one(message, session, qos, options, sorted(ids))

    def _deliver_shared(self, message: Message, key: tuple[str, str], members: dict[str, Subscriber]) -> None:
        # Round robin over the group's members, preferring those connected now (§4.8.2).
        entries = list(members.values())
        candidates = [e for e in entries if e[0].connection is not None] or entries
        turn = self._share_turn.get(key, 0) % len(candidates)
        if len(self._share_turn) >= 4096:
            self._share_turn.clear()  # forgets only whose turn it is: groups come and go
        self._share_turn[key] = turn + 1
        session, options = candidates[turn]
        self._deliver_one(message, session, options.qos, options, options.identifiers)

    def _set_retained(self, message: Message) -> None:
        topic = message.topic
        if not message.payload:
            self._delete_retained(topic)  # §3.3.1.3: an empty retained message deletes the retained one
            return
        old = self.retained.get(topic)
        grown = len(message.payload) - (len(old.payload) if old is not None else 0)
        if grown > 0 and self._retained_bytes + grown > self.settings.max_retained_bytes:
            self.stats.messages_dropped += 1
            log.warning(
                "retained message on %r not kept: retained messages would exceed %d bytes ([mqtt] "
                "max_retained_bytes); delete unused ones by publishing an empty retained message",
                topic[:100],
                self.settings.max_retained_bytes,
            )
            return
        self.retained[topic] = message
        self._retained_bytes += grown
        if self.state is not None and not topic.startswith(SYS_PREFIX):
            self.state.put_retained(message)

    def _delete_retained(self, topic: str) -> None:
        old = self.retained.pop(topic, None)
        if old is None:
            return
        self._retained_bytes -= len(old.payload)
        if self.state is not None:
            self.state.delete_retained(topic)

    # -- housekeeping -------------------------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        next_sys = 0.0
        while True:
            now = time.time()
            self.expire_sessions(now)
            try:
                self.flush_state()  # retries what a failed write left gathered
            except Exception as exc:
                log.error("cannot write the broker state (%s): acknowledgements are withheld until it can", exc)
            if self.settings.sys_interval > 0 and now >= next_sys:
                self.publish_sys()
                next_sys = now + self.settings.sys_interval
            await asyncio.sleep(1.0)

    def sys_values(self) -> dict[str, str]:
        stats = self.stats
        subscriptions = sum(len(s.subscriptions) for s in self.sessions.values())
        return {
            "version": f"gateway {__version__}",
            "uptime": f"{int(time.time() - stats.started_at)} seconds",
            "clients/connected": str(stats.clients_connected),
            "clients/disconnected": str(len(self.sessions) - stats.clients_connected),
            "clients/total": str(len(self.sessions)),
            "clients/maximum": str(stats.clients_maximum),
            "messages/received": str(stats.messages_received),
            "messages/sent": str(stats.messages_sent),
            "messages/dropped": str(stats.messages_dropped),
            "messages/rejected": str(stats.publish_rejected),
            "bytes/received": str(stats.bytes_received),
            "bytes/sent": str(stats.bytes_sent),
            "retained messages/count": str(len(self.retained)),
            "subscriptions/count": str(subscriptions),
        }

    def publish_sys(self) -> None:
        for name, value in self.sys_values().items():
            message = Message(SYS_PREFIX + name, value.encode(), 0, True)
            # Routed without counting: $SYS traffic is not client traffic.
            self.stats.messages_received -= 1
            self.route(message)
