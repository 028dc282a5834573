"""Hypothesis strategies that build *valid* MQTT packets for `gateway.mqtt.codec`.

Everything drawn here is a packet a conforming peer may send, for one protocol version, in the shape the codec
decodes it back to (so that `decode(encode(p)) == p`):

- strings are MQTT UTF-8 (MQTT 5.0 §1.5.4, 3.1.1 §1.5.3): no U+0000, no surrogates, at most 65,535 bytes;
- PUBLISH and will topic names are non-empty and carry no wildcard (§3.3.2.1, §4.7.3); a v5 PUBLISH may have an
  empty topic only together with a Topic Alias (§3.3.2.3.4);
- packet identifiers are 1..65535 (§2.2.1);
- v5 properties are only those the property table allows in that packet (§2.2.2.2), with legal values;
- version-specific fields are left at their defaults when the version has no room for them (3.1.1 has no
  properties, no ack reason codes, no UNSUBACK payload, no AUTH; its CONNACK return codes map onto a few v5
  reasons only).

Reusable: `packets(version)` for any packet a peer of that version may send or receive, `connects(level)`,
`stream(version)` for a CONNECT-led list, and the per-type strategies.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from gateway.mqtt.codec import (
    MQTT_5,
    MQTT_31,
    MQTT_311,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    Prop,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)

WILL_PROPERTIES = 0  # the codec's pseudo packet type for the will properties of CONNECT (§3.1.3.2)

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFF_FFFF)
FLAG = st.integers(0, 1)
packet_ids = st.integers(1, 0xFFFF)

# ---------------------------------------------------------------------------------------------------------------
# Strings and topics

# Any code point but U+0000 and the surrogates (§1.5.4 [MQTT-1.5.4-1], [MQTT-1.5.4-2]). A short alphabet of the
# characters that matter to MQTT ('/', '+', '#', '$', multi-byte ones) is mixed in so that they show up often.
_MQTT_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")  # utf-8 leaves out the surrogates
_INTERESTING = st.sampled_from(["/", "+", "#", "$", "a", "é", "€", "\U0001f600", "\ufeff", "\x7f", " "])
mqtt_chars = st.one_of(_INTERESTING, _MQTT_CHARS)
mqtt_text = st.text(mqtt_chars, max_size=12)
nonempty_text = st.text(mqtt_chars, min_size=1, max_size=12)
binary = st.binary(max_size=16)

_TOPIC_CHARS = st.one_of(
    st.sampled_from(["/", "$", "a", "b", "é", "\U0001f600"]),
    st.characters(codec="utf-8", exclude_characters="\x00+#"),
)
_LEVEL_CHARS = st.one_of(st.sampled_from(["$", "a", "é"]), st.characters(codec="utf-8", exclude_characters="\x00+#/"))
topic_names = st.text(_TOPIC_CHARS, min_size=1, max_size=12)
"""A PUBLISH / will Topic Name: non-empty, no '+' or '#' (§3.3.2.1, §4.7.1, [MQTT-4.7.3-1])."""


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    """A valid Topic Filter (§4.7.1): levels that are text, '+' alone, or a final '#'; sometimes shared."""
    levels = draw(st.lists(st.one_of(st.just("+"), st.text(_LEVEL_CHARS, max_size=6)), max_size=4))
    if draw(st.booleans()) or not levels:
        levels.append("#")
    result = "/".join(levels) or "#"  # [MQTT-4.7.3-1]: at least one character
    if draw(st.integers(0, 9)) == 0:
        result = "$share/group/" + result
    return result


# ---------------------------------------------------------------------------------------------------------------
# Properties (MQTT 5.0 §2.2.2.2)

user_properties = st.lists(st.tuples(mqtt_text, mqtt_text), min_size=1, max_size=3)

PROPERTY_VALUES: dict[int, st.SearchStrategy[Any]] = {
    Prop.PAYLOAD_FORMAT_INDICATOR: FLAG,  # §3.3.2.3.2
    Prop.MESSAGE_EXPIRY_INTERVAL: U32,
    Prop.CONTENT_TYPE: mqtt_text,
    Prop.RESPONSE_TOPIC: topic_names,  # §3.3.2.3.5: a Topic Name, no wildcards [MQTT-3.3.2-14]
    Prop.CORRELATION_DATA: binary,
    Prop.SUBSCRIPTION_IDENTIFIER: st.lists(st.integers(1, 268_435_455), min_size=1, max_size=3),  # §3.3.2.3.8
    Prop.SESSION_EXPIRY_INTERVAL: U32,
    Prop.ASSIGNED_CLIENT_IDENTIFIER: mqtt_text,
    Prop.SERVER_KEEP_ALIVE: U16,
    Prop.AUTHENTICATION_METHOD: nonempty_text,
    Prop.AUTHENTICATION_DATA: binary,
    Prop.REQUEST_PROBLEM_INFORMATION: FLAG,  # §3.1.2.11.7
    Prop.WILL_DELAY_INTERVAL: U32,
    Prop.REQUEST_RESPONSE_INFORMATION: FLAG,  # §3.1.2.11.6
    Prop.RESPONSE_INFORMATION: mqtt_text,
    Prop.SERVER_REFERENCE: mqtt_text,
    Prop.REASON_STRING: mqtt_text,
    Prop.RECEIVE_MAXIMUM: st.integers(1, 0xFFFF),  # §3.1.2.11.3: 0 is a Protocol Error
    Prop.TOPIC_ALIAS_MAXIMUM: U16,
    Prop.TOPIC_ALIAS: st.integers(1, 0xFFFF),  # §3.3.2.3.4: 0 is not permitted
    Prop.MAXIMUM_QOS: FLAG,  # §3.2.2.3.4
    Prop.RETAIN_AVAILABLE: FLAG,
    Prop.USER_PROPERTY: user_properties,
    Prop.MAXIMUM_PACKET_SIZE: st.integers(1, 0xFFFF_FFFF),  # §3.1.2.11.4: 0 is a Protocol Error
    Prop.WILDCARD_SUBSCRIPTION_AVAILABLE: FLAG,
    Prop.SUBSCRIPTION_IDENTIFIER_AVAILABLE: FLAG,
    Prop.SHARED_SUBSCRIPTION_AVAILABLE: FLAG,
}

_P = PacketType
# The property table of §2.2.2.2, restated here independently of the codec's own table.
ALLOWED_PROPERTIES: dict[int, frozenset[int]] = {
    _P.CONNECT: frozenset(
        {
            Prop.SESSION_EXPIRY_INTERVAL,
            Prop.AUTHENTICATION_METHOD,
            Prop.AUTHENTICATION_DATA,
            Prop.REQUEST_PROBLEM_INFORMATION,
            Prop.REQUEST_RESPONSE_INFORMATION,
            Prop.RECEIVE_MAXIMUM,
            Prop.TOPIC_ALIAS_MAXIMUM,
            Prop.USER_PROPERTY,
            Prop.MAXIMUM_PACKET_SIZE,
        }
    ),
    WILL_PROPERTIES: frozenset(
        {
            Prop.PAYLOAD_FORMAT_INDICATOR,
            Prop.MESSAGE_EXPIRY_INTERVAL,
            Prop.CONTENT_TYPE,
            Prop.RESPONSE_TOPIC,
            Prop.CORRELATION_DATA,
            Prop.WILL_DELAY_INTERVAL,
            Prop.USER_PROPERTY,
        }
    ),
    _P.CONNACK: frozenset(
        {
            Prop.SESSION_EXPIRY_INTERVAL,
            Prop.ASSIGNED_CLIENT_IDENTIFIER,
            Prop.SERVER_KEEP_ALIVE,
            Prop.AUTHENTICATION_METHOD,
            Prop.AUTHENTICATION_DATA,
            Prop.RESPONSE_INFORMATION,
            Prop.SERVER_REFERENCE,
            Prop.REASON_STRING,
            Prop.RECEIVE_MAXIMUM,
            Prop.TOPIC_ALIAS_MAXIMUM,
            Prop.MAXIMUM_QOS,
            Prop.RETAIN_AVAILABLE,
            Prop.USER_PROPERTY,
            Prop.MAXIMUM_PACKET_SIZE,
            Prop.WILDCARD_SUBSCRIPTION_AVAILABLE,
            Prop.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            Prop.SHARED_SUBSCRIPTION_AVAILABLE,
        }
    ),
    _P.PUBLISH: frozenset(
        {
            Prop.PAYLOAD_FORMAT_INDICATOR,
            Prop.MESSAGE_EXPIRY_INTERVAL,
            Prop.CONTENT_TYPE,
            Prop.RESPONSE_TOPIC,
            Prop.CORRELATION_DATA,
            Prop.SUBSCRIPTION_IDENTIFIER,
            Prop.TOPIC_ALIAS,
            Prop.USER_PROPERTY,
        }
    ),
    _P.PUBACK: frozenset({Prop.REASON_STRING, Prop.USER_PROPERTY}),
    _P.PUBREC: frozenset({Prop.REASON_STRING, Prop.USER_PROPERTY}),
    _P.PUBREL: frozenset({Prop.REASON_STRING, Prop.USER_PROPERTY}),
    _P.PUBCOMP: frozenset({Prop.REASON_STRING, Prop.USER_PROPERTY}),
    _P.SUBSCRIBE: frozenset({Prop.SUBSCRIPTION_IDENTIFIER, Prop.USER_PROPERTY}),
    _P.SUBACK: frozenset({Prop.REASON_STRING, Prop.USER_PROPERTY}),
    _P.UNSUBSCRIBE: frozenset({Prop.USER_PROPERTY}),
    _P.UNSUBACK: frozenset({Prop.REASON_STRING, Prop.USER_PROPERTY}),
    _P.DISCONNECT: frozenset(
        {Prop.SESSION_EXPIRY_INTERVAL, Prop.SERVER_REFERENCE, Prop.REASON_STRING, Prop.USER_PROPERTY}
    ),
    _P.AUTH: frozenset({Prop.AUTHENTICATION_METHOD, Prop.AUTHENTICATION_DATA, Prop.REASON_STRING, Prop.USER_PROPERTY}),
}


def _fix_properties(packet_type: int, props: Properties) -> Properties:
    # Authentication Data without Authentication Method is a Protocol Error (§3.1.2.11.10, §3.2.2.3.18).
    if Prop.AUTHENTICATION_DATA in props and Prop.AUTHENTICATION_METHOD not in props:
        props[Prop.AUTHENTICATION_METHOD] = "SCRAM-SHA-1"
    # A SUBSCRIBE carries at most one Subscription Identifier (§3.8.2.1.2).
    if packet_type == _P.SUBSCRIBE and Prop.SUBSCRIPTION_IDENTIFIER in props:
        props[Prop.SUBSCRIPTION_IDENTIFIER] = props[Prop.SUBSCRIPTION_IDENTIFIER][:1]
    return props


def properties(packet_type: int, required: frozenset[int] = frozenset()) -> st.SearchStrategy[Properties]:
    """A v5 property set valid in `packet_type` (a PacketType, or WILL_PROPERTIES), each property at most once
    except User Property and Subscription Identifier, which hold lists."""
    allowed = ALLOWED_PROPERTIES[packet_type]
    return st.fixed_dictionaries(
        {ident: PROPERTY_VALUES[ident] for ident in sorted(required)},
        optional={ident: PROPERTY_VALUES[ident] for ident in sorted(allowed - required)},
    ).map(lambda props: _fix_properties(packet_type, props))


# ---------------------------------------------------------------------------------------------------------------
# Reason codes (§2.4), by the packets that may carry them

CONNACK_REASONS = [0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97]
CONNACK_REASONS += [0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F]  # §3.2.2.2
# 3.1.1 return codes 0..5 (3.1.1 §3.2.2.3) decode to these v5 reasons; other reasons do not survive a round trip.
CONNACK_REASONS_V311 = [0x00, 0x84, 0x85, 0x88, 0x86, 0x87]
PUBACK_REASONS = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]  # §3.4.2.1, also PUBREC §3.5.2.1
PUBREL_REASONS = [0x00, 0x92]  # §3.6.2.1, also PUBCOMP §3.7.2.1
SUBACK_REASONS = [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2]  # §3.9.3
SUBACK_RETURN_CODES_V311 = [0x00, 0x01, 0x02, 0x80]  # 3.1.1 §3.9.3
UNSUBACK_REASONS = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]  # §3.11.3
DISCONNECT_REASONS = [0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94]
DISCONNECT_REASONS += [0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2]  # §3.14.2.1
AUTH_REASONS = [0x00, 0x18, 0x19]  # §3.15.2.1


# ---------------------------------------------------------------------------------------------------------------
# Packets


@st.composite
def wills(draw: st.DrawFn, level: int) -> Will:
    props = draw(properties(WILL_PROPERTIES)) if level == MQTT_5 else {}
    return Will(draw(topic_names), draw(binary), draw(st.integers(0, 2)), draw(st.booleans()), props)


@st.composite
def connects(draw: st.DrawFn, level: int | None = None) -> Connect:
    """A CONNECT (§3.1). `level` 3, 4 or 5; drawn when None."""
    if level is None:
        level = draw(st.sampled_from([MQTT_31, MQTT_311, MQTT_5]))
    username = draw(st.none() | mqtt_text)
    # 3.1.1 §3.1.2.9 [MQTT-3.1.2-22]: no password without a user name; v5 allows it (§3.1.2.9).
    password = None if username is None and level != MQTT_5 else draw(st.none() | binary)
    return Connect(
        client_id=draw(mqtt_text),
        protocol_level=level,
        clean_start=draw(st.booleans()),
        keep_alive=draw(U16),
        username=username,
        password=password,
        will=draw(st.none() | wills(level)),
        properties=draw(properties(_P.CONNECT)) if level == MQTT_5 else {},
    )


@st.composite
def connacks(draw: st.DrawFn, version: int) -> ConnAck:
    if version != MQTT_5:
        code = draw(st.sampled_from(CONNACK_REASONS_V311))
        # 3.1.1 [MQTT-3.2.2-4]: Session Present is 0 with a non-zero return code; v5 [MQTT-3.2.2-6] likewise.
        return ConnAck(code, draw(st.booleans()) if code == 0 else False)
    code = draw(st.sampled_from(CONNACK_REASONS))
    return ConnAck(code, draw(st.booleans()) if code == 0 else False, draw(properties(_P.CONNACK)))


@st.composite
def publishes(draw: st.DrawFn, version: int) -> Publish:
    qos = draw(st.integers(0, 2))
    props = draw(properties(_P.PUBLISH)) if version == MQTT_5 else {}
    topic = draw(topic_names)
    if Prop.TOPIC_ALIAS in props and draw(st.booleans()):
        topic = ""  # §3.3.2.3.4: an empty Topic Name with a Topic Alias
    return Publish(
        topic=topic,
        payload=draw(st.binary(max_size=64)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,  # §3.3.1.1 [MQTT-3.3.1-2]
        packet_id=draw(packet_ids) if qos else None,
        properties=props,
    )


_ACKS: dict[type[PubAck | PubRec | PubRel | PubComp], tuple[int, list[int]]] = {
    PubAck: (_P.PUBACK, PUBACK_REASONS),
    PubRec: (_P.PUBREC, PUBACK_REASONS),
    PubRel: (_P.PUBREL, PUBREL_REASONS),
    PubComp: (_P.PUBCOMP, PUBREL_REASONS),
}


@st.composite
def publish_acks(draw: st.DrawFn, version: int) -> PubAck | PubRec | PubRel | PubComp:
    """PUBACK, PUBREC, PUBREL or PUBCOMP; reason codes and properties in v5 only (§3.4-§3.7)."""
    cls = draw(st.sampled_from(list(_ACKS)))
    packet_type, reasons = _ACKS[cls]
    if version != MQTT_5:
        return cls(draw(packet_ids))
    return cls(draw(packet_ids), draw(st.sampled_from(reasons)), draw(properties(packet_type)))


@st.composite
def subscriptions(draw: st.DrawFn, version: int) -> Subscription:
    if version != MQTT_5:
        return Subscription(draw(topic_filters()), draw(st.integers(0, 2)))
    return Subscription(
        draw(topic_filters()),
        draw(st.integers(0, 2)),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.integers(0, 2)),  # §3.8.3.1: retain handling 3 is a Protocol Error
    )


@st.composite
def subscribes(draw: st.DrawFn, version: int) -> Subscribe:
    return Subscribe(
        draw(packet_ids),
        draw(st.lists(subscriptions(version), min_size=1, max_size=4)),  # §3.8.3 [MQTT-3.8.3-2]
        draw(properties(_P.SUBSCRIBE)) if version == MQTT_5 else {},
    )


@st.composite
def subacks(draw: st.DrawFn, version: int) -> SubAck:
    reasons = SUBACK_REASONS if version == MQTT_5 else SUBACK_RETURN_CODES_V311
    return SubAck(
        draw(packet_ids),
        draw(st.lists(st.sampled_from(reasons), min_size=1, max_size=4)),
        draw(properties(_P.SUBACK)) if version == MQTT_5 else {},
    )


@st.composite
def unsubscribes(draw: st.DrawFn, version: int) -> Unsubscribe:
    return Unsubscribe(
        draw(packet_ids),
        draw(st.lists(topic_filters(), min_size=1, max_size=4)),  # §3.10.3 [MQTT-3.10.3-2]
        draw(properties(_P.UNSUBSCRIBE)) if version == MQTT_5 else {},
    )


@st.composite
def unsubacks(draw: st.DrawFn, version: int) -> UnsubAck:
    if version != MQTT_5:
        return UnsubAck(draw(packet_ids))  # 3.1.1 §3.11.3: no payload
    return UnsubAck(
        draw(packet_ids),
        draw(st.lists(st.sampled_from(UNSUBACK_REASONS), min_size=1, max_size=4)),
        draw(properties(_P.UNSUBACK)),
    )


@st.composite
def disconnects(draw: st.DrawFn, version: int) -> Disconnect:
    if version != MQTT_5:
        return Disconnect()
    return Disconnect(draw(st.sampled_from(DISCONNECT_REASONS)), draw(properties(_P.DISCONNECT)))


@st.composite
def auths(draw: st.DrawFn) -> Auth:
    """AUTH exists in v5 only (§3.15); it names its Authentication Method (§3.15.2.2.2)."""
    if draw(st.integers(0, 4)) == 0:
        return Auth()  # §3.15.2.1: Success without properties, Remaining Length 0
    return Auth(
        draw(st.sampled_from(AUTH_REASONS)),
        draw(properties(_P.AUTH, required=frozenset({Prop.AUTHENTICATION_METHOD}))),
    )


def non_connect_packets(version: int) -> st.SearchStrategy[Packet]:
    """Every packet type but CONNECT, valid for `version` (3 and 4 share the 3.1.1 rules)."""
    options: list[st.SearchStrategy[Packet]] = [
        connacks(version),
        publishes(version),
        publish_acks(version),
        subscribes(version),
        subacks(version),
        unsubscribes(version),
        unsubacks(version),
        st.builds(PingReq),
        st.builds(PingResp),
        disconnects(version),
    ]
    if version == MQTT_5:
        options.append(auths())
    return st.one_of(options)


def packets(version: int) -> st.SearchStrategy[Packet]:
    """Any packet valid for `version`, CONNECT included (with that protocol level)."""
    return st.one_of(connects(version), non_connect_packets(version))


@st.composite
def streams(draw: st.DrawFn, version: int, max_size: int = 8) -> list[Packet]:
    """A connection's worth of packets: a CONNECT of `version` first, then anything else but CONNECT."""
    return [draw(connects(version)), *draw(st.lists(non_connect_packets(version), max_size=max_size))]


# ---------------------------------------------------------------------------------------------------------------
# A fixed corpus: one packet of every type with every field and property it may carry, for seeding mutations


def _full_properties(packet_type: int) -> Properties:
    """Every property §2.2.2.2 allows in `packet_type`, each with a valid non-default value."""
    values: dict[int, Any] = {
        Prop.PAYLOAD_FORMAT_INDICATOR: 1,
        Prop.MESSAGE_EXPIRY_INTERVAL: 3600,
        Prop.CONTENT_TYPE: "text/plain",
        Prop.RESPONSE_TOPIC: "reply/é",
        Prop.CORRELATION_DATA: b"\x00\x01",
        Prop.SUBSCRIPTION_IDENTIFIER: [268_435_455] if packet_type == _P.SUBSCRIBE else [1, 128, 16_384],
        Prop.SESSION_EXPIRY_INTERVAL: 0xFFFF_FFFF,
        Prop.ASSIGNED_CLIENT_IDENTIFIER: "auto-1",
        Prop.SERVER_KEEP_ALIVE: 120,
        Prop.AUTHENTICATION_METHOD: "SCRAM-SHA-256",
        Prop.AUTHENTICATION_DATA: b"\xde\xad",
        Prop.REQUEST_PROBLEM_INFORMATION: 0,
        Prop.WILL_DELAY_INTERVAL: 10,
        Prop.REQUEST_RESPONSE_INFORMATION: 1,
        Prop.RESPONSE_INFORMATION: "resp/",
        Prop.SERVER_REFERENCE: "other:1883",
        Prop.REASON_STRING: "because",
        Prop.RECEIVE_MAXIMUM: 20,
        Prop.TOPIC_ALIAS_MAXIMUM: 10,
        Prop.TOPIC_ALIAS: 3,
        Prop.MAXIMUM_QOS: 1,
        Prop.RETAIN_AVAILABLE: 0,
        Prop.USER_PROPERTY: [("k", "v"), ("k", "w"), ("", "")],
        Prop.MAXIMUM_PACKET_SIZE: 65_536,
        Prop.WILDCARD_SUBSCRIPTION_AVAILABLE: 1,
        Prop.SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0,
        Prop.SHARED_SUBSCRIPTION_AVAILABLE: 1,
    }
    return {ident: values[ident] for ident in sorted(ALLOWED_PROPERTIES[packet_type])}


def sample_packets(version: int) -> list[Packet]:
    """A deterministic list of valid packets for `version`, CONNECT first, covering every type and field."""
    v5 = version == MQTT_5

    def full(packet_type: int) -> Properties:
        return _full_properties(packet_type) if v5 else {}

    will = Will("will/topic", b"bye", 1, True, full(WILL_PROPERTIES))
    result: list[Packet] = [
        Connect("client-é", version, False, 30, "user", b"pw\x00", will, full(_P.CONNECT)),
        ConnAck(0, True, full(_P.CONNACK)),
        ConnAck(0x86 if v5 else 0x87),
        Publish("a/b/€", b"payload", 2, True, True, 0xFFFF, full(_P.PUBLISH)),
        Publish("t", b"", 1, False, False, 1),
        Publish("x", b"\x00" * 130),
    ]
    if v5:
        result.append(Publish("", b"aliased", 0, properties={Prop.TOPIC_ALIAS: 3}))
    for cls, packet_type, reason in (
        (PubAck, _P.PUBACK, 0x10),
        (PubRec, _P.PUBREC, 0x80),
        (PubRel, _P.PUBREL, 0x92),
        (PubComp, _P.PUBCOMP, 0x92),
    ):
        result.append(cls(7, reason, full(packet_type)) if v5 else cls(7))
        result.append(cls(8))
    subscriptions = [Subscription("a/+/c", 2, v5, v5, 2 if v5 else 0), Subscription("#", 1), Subscription("$share/g/x")]
    result += [
        Subscribe(9, subscriptions, full(_P.SUBSCRIBE)),
        SubAck(9, [2, 1, 0x80], full(_P.SUBACK)),
        Unsubscribe(10, ["a/+/c", "#"], full(_P.UNSUBSCRIBE)),
        UnsubAck(10, [0, 0x11] if v5 else [], full(_P.UNSUBACK)),
        PingReq(),
        PingResp(),
        Disconnect(0x04 if v5 else 0, full(_P.DISCONNECT)),
    ]
    if v5:
        result += [Auth(0x18, full(_P.AUTH)), Auth()]
    return result
