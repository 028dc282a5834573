# MQTT-SN 1.2 for MicroPython, written from the specification (section numbers below are its own): the messages a
# sensor node sends and receives, and a small client over any transport that can send and receive whole messages
# (UDP: udp.py; a UART: uart.py).
import struct

from clock import remaining_ms, ticks_add, ticks_ms

# Message types (§5.2.2)
ADVERTISE = 0x00
SEARCHGW = 0x01
GWINFO = 0x02
CONNECT = 0x04
CONNACK = 0x05
WILLTOPICREQ = 0x06
WILLTOPIC = 0x07
WILLMSGREQ = 0x08
WILLMSG = 0x09
REGISTER = 0x0A
REGACK = 0x0B
PUBLISH = 0x0C
PUBACK = 0x0D
PUBCOMP = 0x0E
PUBREC = 0x0F
PUBREL = 0x10
SUBSCRIBE = 0x12
SUBACK = 0x13
UNSUBSCRIBE = 0x14
UNSUBACK = 0x15
PINGREQ = 0x16
PINGRESP = 0x17
DISCONNECT = 0x18

# Flags (§5.3.4)
DUP = 0x80
RETAIN = 0x10
WILL = 0x08
CLEAN_SESSION = 0x04
TOPIC_NORMAL = 0  # a registered topic id, or a topic name in SUBSCRIBE
TOPIC_PREDEFINED = 1
TOPIC_SHORT = 2

# Return codes (§5.3.10)
ACCEPTED = 0
CONGESTION = 1
INVALID_TOPIC_ID = 2
NOT_SUPPORTED = 3

PROTOCOL_ID = 0x01


def qos_flags(qos):
    """QoS bits 6-5: 0b00 0, 0b01 1, 0b10 2, 0b11 -1 (§5.3.4)."""
    if qos == -1:
        return 0x60
    if qos not in (0, 1, 2):
        raise ValueError("QoS must be -1, 0, 1 or 2")
    return qos << 5


def flags_qos(flags):
    q = (flags >> 5) & 3
    return -1 if q == 3 else q


def message(msg_type, body=b""):
    """Length, MsgType, body (§5.2.1): one Length octet below 256 octets in all, else 0x01 and two octets."""
    n = len(body) + 2
    if n < 256:
        return bytes((n, msg_type)) + body
    if n + 2 > 0xFFFF:
        raise ValueError("message too long")
    return b"\x01" + struct.pack("!HB", n + 2, msg_type) + body


def _text(s):
    return s if isinstance(s, (bytes, bytearray)) else s.encode()


def searchgw(radius=1):
    return message(SEARCHGW, bytes((radius,)))


def connect(client_id, duration, clean=True, will=False):
    flags = (CLEAN_SESSION if clean else 0) | (WILL if will else 0)
    return message(CONNECT, struct.pack("!BBH", flags, PROTOCOL_ID, duration) + _text(client_id))


def willtopic(topic, qos=0, retain=False):
    return message(WILLTOPIC, bytes((qos_flags(qos) | (RETAIN if retain else 0),)) + _text(topic))


def willmsg(data):
    return message(WILLMSG, _text(data))


def register(msg_id, topic, topic_id=0):
    return message(REGISTER, struct.pack("!HH", topic_id, msg_id) + _text(topic))


def regack(topic_id, msg_id, code=ACCEPTED):
    return message(REGACK, struct.pack("!HHB", topic_id, msg_id, code))


def short_topic_id(name):
    raw = _text(name)
    if len(raw) != 2:
        raise ValueError("a short topic name has two characters")
    return raw[0] << 8 | raw[1]


def publish(topic_id, data, qos=0, msg_id=0, topic_type=TOPIC_NORMAL, retain=False, dup=False):
    """`topic_id` is a registered or pre-defined id, or a two-character short name (topic_type TOPIC_SHORT)."""
    if topic_type == TOPIC_SHORT and not isinstance(topic_id, int):
        topic_id = short_topic_id(topic_id)
    flags = qos_flags(qos) | topic_type | (RETAIN if retain else 0) | (DUP if dup else 0)
    return message(PUBLISH, struct.pack("!BHH", flags, topic_id, msg_id if qos > 0 else 0) + _text(data))


def puback(topic_id, msg_id, code=ACCEPTED):
    return message(PUBACK, struct.pack("!HHB", topic_id, msg_id, code))


def pubrec(msg_id):
    return message(PUBREC, struct.pack("!H", msg_id))


def pubrel(msg_id):
    return message(PUBREL, struct.pack("!H", msg_id))


def pubcomp(msg_id):
    return message(PUBCOMP, struct.pack("!H", msg_id))


def subscribe(msg_id, topic, qos=0, topic_type=TOPIC_NORMAL):
    """`topic` is a topic name or filter (TOPIC_NORMAL), a pre-defined id (int) or a short name."""
    flags = qos_flags(qos) | topic_type
    if topic_type == TOPIC_NORMAL:
        what = _text(topic)
    elif topic_type == TOPIC_SHORT:
        what = struct.pack("!H", short_topic_id(topic))
    else:
        what = struct.pack("!H", topic)
    return message(SUBSCRIBE, struct.pack("!BH", flags, msg_id) + what)


def pingreq(client_id=None):
    """With the client id when a sleeping client wakes up to collect its messages (§6.14)."""
    return message(PINGREQ, _text(client_id) if client_id else b"")


def disconnect(duration=None):
    """With a duration (seconds) the client goes to sleep (§6.14)."""
    return message(DISCONNECT, b"" if duration is None else struct.pack("!H", duration))


def decode(data):
    """(msg_type, fields) of one message; fields is a dict by type. Raises ValueError for what is not one whole,
    well-formed MQTT-SN message (a receiver must survive any datagram)."""
    if len(data) < 2:
        raise ValueError("shorter than a header")
    if data[0] == 1:
        if len(data) < 4:
            raise ValueError("short three-octet length")
        length = data[1] << 8 | data[2]
        start = 4
        msg_type = data[3]
    else:
        length = data[0]
        start = 2
        msg_type = data[1]
    if length != len(data) or length < start:
        raise ValueError("length %d, but %d octets" % (length, len(data)))
    body = bytes(data[start:])
    n = len(body)
    f = {}
    if msg_type == ADVERTISE:
        _need(n, 3, 3)
        f["gw_id"] = body[0]
        f["duration"] = body[1] << 8 | body[2]
    elif msg_type == GWINFO:
        _need(n, 1, None)
        f["gw_id"] = body[0]
        f["gw_add"] = body[1:]
    elif msg_type == SEARCHGW:
        _need(n, 1, 1)
        f["radius"] = body[0]
    elif msg_type == CONNACK:
        _need(n, 1, 1)
        f["code"] = body[0]
    elif msg_type in (WILLTOPICREQ, WILLMSGREQ, PINGRESP):
        _need(n, 0, 0)
    elif msg_type == REGISTER:
        _need(n, 4, None)
        f["topic_id"], f["msg_id"] = struct.unpack("!HH", body[:4])
        f["topic"] = body[4:].decode()
    elif msg_type in (REGACK, PUBACK):
        _need(n, 5, 5)
        f["topic_id"], f["msg_id"], f["code"] = struct.unpack("!HHB", body)
    elif msg_type == PUBLISH:
        _need(n, 5, None)
        flags, f["topic_id"], f["msg_id"] = struct.unpack("!BHH", body[:5])
        f["qos"] = flags_qos(flags)
        f["topic_type"] = flags & 3
        f["dup"] = bool(flags & DUP)
        f["retain"] = bool(flags & RETAIN)
        f["data"] = body[5:]
    elif msg_type in (PUBREC, PUBREL, PUBCOMP, UNSUBACK):
        _need(n, 2, 2)
        f["msg_id"] = body[0] << 8 | body[1]
    elif msg_type == SUBACK:
        _need(n, 6, 6)
        flags, f["topic_id"], f["msg_id"], f["code"] = struct.unpack("!BHHB", body)
        f["qos"] = flags_qos(flags)
    elif msg_type == DISCONNECT:
        if n not in (0, 2):
            raise ValueError("DISCONNECT with %d octets" % n)
        f["duration"] = (body[0] << 8 | body[1]) if n == 2 else None
    elif msg_type == PINGREQ:
        f["client_id"] = body.decode() if n else None
    elif msg_type in (CONNECT, WILLTOPIC, WILLMSG, SUBSCRIBE, UNSUBSCRIBE):
        f["body"] = body  # sent by clients: a node has no need to read them
    else:
        raise ValueError("unknown message type 0x%02x" % msg_type)
    return msg_type, f


def _need(n, least, most):
    if n < least or (most is not None and n > most):
        raise ValueError("message body of %d octets" % n)


class Refused(Exception):
    """The gateway answered with a return code other than accepted."""

    def __init__(self, what, code):
        super().__init__("%s refused: return code %d" % (what, code))
        self.code = code


class Client:
    """An MQTT-SN client over `transport` (send(bytes); receive(timeout_ms) -> bytes or None).

    Messages the gateway sends on its own (a PUBLISH, a REGISTER before it) are answered here and PUBLISHes go to
    `on_message(topic, data)`; `topics` maps topic ids to names (registered both ways, and the pre-defined ids the
    caller adds), so a sleeping node can keep it across deep sleep and resume without registering again."""

    def __init__(self, transport, client_id, on_message=None, retry_ms=10000, retries=3, topics=None):
        self.transport = transport
        self.client_id = client_id
        self.on_message = on_message
        self.retry_ms = retry_ms  # T_RETRY (§7.2)
        self.retries = retries  # N_RETRY
        self.topics = topics if topics is not None else {}
        self.msg_id = 0
        self._qos2 = set()  # QoS 2 messages received and not yet released (§6.12)

    def next_id(self):
        self.msg_id = self.msg_id % 0xFFFF + 1
        return self.msg_id

    def send(self, data):
        self.transport.send(data)

    def receive(self, timeout_ms):
        """The next message, decoded, or None when nothing came within `timeout_ms`; malformed ones are skipped."""
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while True:
            left = remaining_ms(deadline)
            if left <= 0:
                return None
            data = self.transport.receive(left)
            if data is None:
                return None
            try:
                return decode(data)
            except (ValueError, IndexError, UnicodeError):
                continue

    def handle(self, msg_type, f):
        """Answers what the gateway sends on its own. True if the message was one of those."""
        if msg_type == PUBLISH:
            qos = f["qos"]
            if qos == 1:
                self.send(puback(f["topic_id"], f["msg_id"]))
            elif qos == 2:
                self.send(pubrec(f["msg_id"]))
                if f["msg_id"] in self._qos2:
                    return True  # sent again before our PUBREC arrived: delivered once already
                self._qos2.add(f["msg_id"])
            if f["topic_type"] == TOPIC_SHORT:
                topic = bytes(((f["topic_id"] >> 8) & 0xFF, f["topic_id"] & 0xFF)).decode()
            else:
                topic = self.topics.get(f["topic_id"])
            if self.on_message is not None:
                self.on_message(topic, f["data"])
            return True
        if msg_type == REGISTER:
            self.topics[f["topic_id"]] = f["topic"]
            self.send(regack(f["topic_id"], f["msg_id"]))
            return True
        if msg_type == PUBREL:
            self._qos2.discard(f["msg_id"])
            self.send(pubcomp(f["msg_id"]))
            return True
        return False

    def request(self, data, answer, match=None, what="request"):
        """Sends `data` and waits for a message of type `answer` (for which `match(fields)` holds), answering the
        gateway's own messages meanwhile; sends again (DUP set for a PUBLISH) every retry_ms, up to `retries` times.
        Returns the answer's fields; raises OSError when none came."""
        for attempt in range(self.retries + 1):
            if attempt and data[1 if data[0] != 1 else 3] == PUBLISH:
                data = _with_dup(data)
            self.send(data)
            deadline = ticks_add(ticks_ms(), self.retry_ms)
            while True:
                left = remaining_ms(deadline)
                if left <= 0:
                    break
                got = self.receive(left)
                if got is None:
                    break
                msg_type, f = got
                if msg_type == answer and (match is None or match(f)):
                    return f
                if msg_type == DISCONNECT and answer != DISCONNECT:
                    raise Refused(what + " (the gateway answered DISCONNECT)", -1)
                self.handle(msg_type, f)
        raise OSError(110, "no answer to %s" % what)  # ETIMEDOUT

    def connect(self, duration, clean=True):
        f = self.request(connect(self.client_id, duration, clean), CONNACK, what="CONNECT")
        if f["code"] != ACCEPTED:
            raise Refused("CONNECT", f["code"])

    def register(self, topic):
        msg_id = self.next_id()
        f = self.request(register(msg_id, topic), REGACK, lambda f: f["msg_id"] == msg_id, "REGISTER")
        if f["code"] != ACCEPTED:
            raise Refused("REGISTER " + topic, f["code"])
        self.topics[f["topic_id"]] = topic
        return f["topic_id"]

    def topic_id(self, topic):
        """The id of `topic`, registered now if this client does not know one yet."""
        for tid, name in self.topics.items():
            if name == topic:
                return tid
        return self.register(topic)

    def publish(self, topic_id, data, qos=1, topic_type=TOPIC_NORMAL, retain=False):
        """QoS 1: waits for the PUBACK and raises Refused unless it accepts; QoS 2: PUBREC, PUBREL, PUBCOMP;
        QoS 0 and -1: one datagram, nothing comes back."""
        if qos <= 0:
            self.send(publish(topic_id, data, qos, 0, topic_type, retain))
            return
        msg_id = self.next_id()
        answer = PUBACK if qos == 1 else PUBREC

        def mine(f):
            return f["msg_id"] == msg_id

        f = self.request(publish(topic_id, data, qos, msg_id, topic_type, retain), answer, mine, "PUBLISH")
        if qos == 1 and f["code"] != ACCEPTED:
            raise Refused("PUBLISH", f["code"])
        if qos == 2:
            self.request(pubrel(msg_id), PUBCOMP, mine, "PUBREL")

    def publish_to(self, topic, data, qos=1, retain=False):
        """PUBLISH to a topic name: registered first when this client has no id for it, and registered again, once,
        when the gateway answers "invalid topic id" (it lost the registrations, e.g. a session started anew)."""
        topic_id = self.topic_id(topic)
        try:
            self.publish(topic_id, data, qos, TOPIC_NORMAL, retain)
        except Refused as e:
            if e.code != INVALID_TOPIC_ID:
                raise
            del self.topics[topic_id]
            self.publish(self.topic_id(topic), data, qos, TOPIC_NORMAL, retain)

    def subscribe(self, topic, qos=1, topic_type=TOPIC_NORMAL):
        msg_id = self.next_id()
        f = self.request(
            subscribe(msg_id, topic, qos, topic_type), SUBACK, lambda f: f["msg_id"] == msg_id, "SUBSCRIBE"
        )
        if f["code"] != ACCEPTED:
            raise Refused("SUBSCRIBE", f["code"])
        if topic_type == TOPIC_NORMAL and f["topic_id"] and "+" not in topic and "#" not in topic:
            self.topics[f["topic_id"]] = topic
        return f["qos"]

    def ping(self):
        self.request(pingreq(), PINGRESP, what="PINGREQ")

    def sleep(self, duration):
        """DISCONNECT with a duration (§6.14): the gateway keeps the session and buffers messages until a wake."""
        self.request(disconnect(duration), DISCONNECT, what="DISCONNECT")

    def wake(self):
        """PINGREQ with the client id (§6.14): the gateway sends what it buffered while the node slept (answered and
        handed to on_message here), then PINGRESP. False if the gateway does not know this node as a sleeping
        client (it answers DISCONNECT: a new session is needed, e.g. after the node's address changed)."""
        try:
            self.request(pingreq(self.client_id), PINGRESP, what="PINGREQ")
        except Refused:
            return False
        return True

    def disconnect(self):
        try:
            self.request(disconnect(), DISCONNECT, what="DISCONNECT")
        except OSError:
            pass


def _with_dup(data):
    out = bytearray(data)
    out[2 if data[0] != 1 else 4] |= DUP
    return bytes(out)
