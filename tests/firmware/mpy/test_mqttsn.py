# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
"""lib/mqttsn.py against the MQTT-SN 1.2 specification's message formats (§5), and its client against a gateway
played by a script. Runs under MicroPython (WebAssembly port) and CPython."""

import mqttsn
from mpytest import FakeTransport, raises


def test_messages_have_the_formats_of_section_5():
    assert mqttsn.searchgw(1) == b"\x03\x01\x01"
    assert mqttsn.connect("abc", 60) == b"\x09\x04\x04\x01\x00\x3cabc"
    assert mqttsn.connect("abc", 60, clean=False, will=True) == b"\x09\x04\x08\x01\x00\x3cabc"
    assert mqttsn.register(1, "t/a") == b"\x09\x0a\x00\x00\x00\x01t/a"
    assert mqttsn.regack(5, 1) == b"\x07\x0b\x00\x05\x00\x01\x00"
    assert mqttsn.publish(5, b"hi", qos=1, msg_id=2) == b"\x09\x0c\x20\x00\x05\x00\x02hi"
    assert mqttsn.publish(5, b"hi", qos=0, msg_id=2) == b"\x09\x0c\x00\x00\x05\x00\x00hi"  # MsgId 0 below QoS 1
    assert mqttsn.publish(1, b"x", qos=-1, topic_type=mqttsn.TOPIC_PREDEFINED) == b"\x08\x0c\x61\x00\x01\x00\x00x"
    assert mqttsn.publish("ab", b"", qos=0, topic_type=mqttsn.TOPIC_SHORT) == b"\x07\x0c\x02ab\x00\x00"
    assert mqttsn.puback(5, 2) == b"\x07\x0d\x00\x05\x00\x02\x00"
    assert mqttsn.pubrec(7) == b"\x04\x0f\x00\x07"
    assert mqttsn.pubrel(7) == b"\x04\x10\x00\x07"
    assert mqttsn.pubcomp(7) == b"\x04\x0e\x00\x07"
    assert mqttsn.subscribe(3, "cmd/#", 1) == b"\x0a\x12\x20\x00\x03cmd/#"
    assert mqttsn.subscribe(3, 9, 0, mqttsn.TOPIC_PREDEFINED) == b"\x07\x12\x01\x00\x03\x00\x09"
    assert mqttsn.pingreq() == b"\x02\x16"
    assert mqttsn.pingreq("abc") == b"\x05\x16abc"
    assert mqttsn.disconnect() == b"\x02\x18"
    assert mqttsn.disconnect(300) == b"\x04\x18\x01\x2c"
    assert mqttsn.willtopic("w", 1, retain=True) == b"\x04\x07\x30w"
    assert mqttsn.willmsg(b"bye") == b"\x05\x09bye"


def test_long_messages_have_a_three_octet_length():
    data = b"x" * 300
    frame = mqttsn.publish(1, data, qos=1, msg_id=1)
    assert frame[:4] == b"\x01\x01\x35\x0c"  # 0x01, then 309 in two octets, then PUBLISH
    assert len(frame) == 309
    msg_type, f = mqttsn.decode(frame)
    assert msg_type == mqttsn.PUBLISH and f["data"] == data and f["qos"] == 1 and f["msg_id"] == 1
    # 253 octets of body is the longest one-octet form (255 in all); one more switches forms.
    assert len(mqttsn.message(0x0C, b"y" * 253)) == 255 and mqttsn.message(0x0C, b"y" * 253)[0] == 255
    assert mqttsn.message(0x0C, b"y" * 254)[:3] == b"\x01\x01\x02"


def test_what_a_gateway_sends_is_decoded():
    assert mqttsn.decode(b"\x03\x05\x00") == (mqttsn.CONNACK, {"code": 0})
    assert mqttsn.decode(b"\x03\x02\x07") == (mqttsn.GWINFO, {"gw_id": 7, "gw_add": b""})
    assert mqttsn.decode(b"\x05\x00\x07\x03\x84") == (mqttsn.ADVERTISE, {"gw_id": 7, "duration": 900})
    assert mqttsn.decode(b"\x07\x0b\x00\x05\x00\x01\x00") == (mqttsn.REGACK, {"topic_id": 5, "msg_id": 1, "code": 0})
    assert mqttsn.decode(b"\x07\x0d\x00\x05\x00\x02\x02")[1]["code"] == mqttsn.INVALID_TOPIC_ID
    t, f = mqttsn.decode(b"\x08\x13\x20\x00\x09\x00\x03\x00")
    assert t == mqttsn.SUBACK and f == {"qos": 1, "topic_id": 9, "msg_id": 3, "code": 0}
    t, f = mqttsn.decode(b"\x0b\x0a\x00\x05\x00\x01cmd/x")
    assert t == mqttsn.REGISTER and f == {"topic_id": 5, "msg_id": 1, "topic": "cmd/x"}
    t, f = mqttsn.decode(b"\x0a\x0c\xa2ab\x00\x04hey")
    assert t == mqttsn.PUBLISH and f["topic_type"] == mqttsn.TOPIC_SHORT and f["dup"] and f["qos"] == 1
    assert f["data"] == b"hey" and f["msg_id"] == 4
    assert mqttsn.decode(b"\x02\x17") == (mqttsn.PINGRESP, {})
    assert mqttsn.decode(b"\x02\x18") == (mqttsn.DISCONNECT, {"duration": None})
    assert mqttsn.decode(b"\x04\x18\x00\x3c") == (mqttsn.DISCONNECT, {"duration": 60})
    assert mqttsn.decode(b"\x04\x10\x00\x07") == (mqttsn.PUBREL, {"msg_id": 7})


def test_malformed_messages_are_refused():
    for bad in (
        b"",
        b"\x02",
        b"\x05\x05\x00",  # Length says 5, three octets came
        b"\x03\x05\x00\x00",  # and the other way round
        b"\x01\x00\x05\x05\x00",  # three-octet Length 5 for 5 octets: fine...
        b"\x06\x0d\x00\x05\x00\x02",  # PUBACK one octet short
        b"\x02\x03",  # reserved type
        b"\x03\x18\x00",  # DISCONNECT with one octet of duration
        b"\x04\x0c\x20\x00",  # PUBLISH without its MsgId
    ):
        if bad == b"\x01\x00\x05\x05\x00":
            assert mqttsn.decode(bad) == (mqttsn.CONNACK, {"code": 0})
            continue
        raises(ValueError, mqttsn.decode, bad)
    raises(ValueError, mqttsn.publish, 1, b"", 3)
    raises(ValueError, mqttsn.short_topic_id, "abc")


def test_a_wake_answers_the_gateways_register_and_publish_then_ends_at_pingresp():
    """§6.14: PINGREQ with the client id; the gateway registers the topic of a buffered message, sends it, then
    PINGRESP. The node answers REGACK and PUBACK, and the message reaches on_message under its topic name."""

    def gateway(frame):
        if frame == mqttsn.pingreq("node-1"):
            return [
                mqttsn.register(1, "cmd/node-1/interval", topic_id=5),
                mqttsn.publish(5, b"120", qos=1, msg_id=2),
                b"\x02\x17",
            ]
        return []

    got = []
    transport = FakeTransport(gateway)
    client = mqttsn.Client(transport, "node-1", lambda topic, data: got.append((topic, data)), retry_ms=50)
    assert client.wake() is True
    assert got == [("cmd/node-1/interval", b"120")]
    assert transport.sent == [mqttsn.pingreq("node-1"), mqttsn.regack(5, 1), mqttsn.puback(5, 2)]
    assert client.topics == {5: "cmd/node-1/interval"}


def test_a_wake_that_the_gateway_does_not_know_returns_false():
    client = mqttsn.Client(FakeTransport(lambda frame: [b"\x02\x18"]), "node-1", retry_ms=50)
    assert client.wake() is False


def test_an_unanswered_publish_goes_again_with_dup_set():
    tries = []

    def gateway(frame):
        tries.append(frame)
        if len(tries) < 2:
            return []  # lost
        f = mqttsn.decode(frame)[1]
        return [mqttsn.puback(f["topic_id"], f["msg_id"])]

    client = mqttsn.Client(FakeTransport(gateway), "node-1", retry_ms=20, retries=2)
    client.publish(3, b"data", qos=1)
    assert len(tries) == 2
    assert mqttsn.decode(tries[0])[1]["dup"] is False
    assert mqttsn.decode(tries[1])[1]["dup"] is True
    assert tries[1][2] == tries[0][2] | mqttsn.DUP and tries[1][3:] == tries[0][3:]


def test_register_publish_and_refusals():
    def gateway(frame):
        t, f = mqttsn.decode(frame)
        if t == mqttsn.REGISTER:
            return [mqttsn.regack(7, f["msg_id"])]
        if t == mqttsn.PUBLISH and f["topic_id"] == 7:
            return [mqttsn.puback(7, f["msg_id"])]
        if t == mqttsn.PUBLISH:
            return [mqttsn.puback(f["topic_id"], f["msg_id"], mqttsn.INVALID_TOPIC_ID)]
        if t == mqttsn.CONNECT:
            return [b"\x03\x05\x03"]  # not supported
        return []

    client = mqttsn.Client(FakeTransport(gateway), "node-1", retry_ms=20, retries=0)
    assert client.topic_id("db/append/X") == 7
    assert client.topic_id("db/append/X") == 7  # known now: no second REGISTER
    client.publish(7, b"[]", qos=1)
    assert raises(mqttsn.Refused, client.publish, 8, b"[]", 1).code == mqttsn.INVALID_TOPIC_ID
    assert raises(mqttsn.Refused, client.connect, 60).code == mqttsn.NOT_SUPPORTED
    raises(OSError, client.ping)  # nobody answers


def test_qos_2_both_ways():
    def gateway(frame):
        t, f = mqttsn.decode(frame)
        if t == mqttsn.PUBLISH:
            return [mqttsn.pubrec(f["msg_id"])]
        if t == mqttsn.PUBREL:
            return [mqttsn.pubcomp(f["msg_id"])]
        if t == mqttsn.PINGREQ:
            # a QoS 2 message from the gateway, sent twice (its PUBREC was lost), released, then PINGRESP
            incoming = mqttsn.publish(4, b"once", qos=2, msg_id=9)
            return [incoming, incoming, mqttsn.pubrel(9), b"\x02\x17"]
        return []

    got = []
    transport = FakeTransport(gateway)
    client = mqttsn.Client(transport, "n", lambda t, d: got.append(d), retry_ms=20, topics={4: "x"})
    client.publish(4, b"q2", qos=2)
    assert [mqttsn.decode(s)[0] for s in transport.sent] == [mqttsn.PUBLISH, mqttsn.PUBREL]
    client.ping()
    assert got == [b"once"]
    assert transport.sent[-1] == mqttsn.pubcomp(9)


def test_publish_to_a_name_registers_again_when_the_gateway_forgot_the_id():
    registered = []

    def gateway(frame):
        t, f = mqttsn.decode(frame)
        if t == mqttsn.REGISTER:
            registered.append(f["topic"])
            return [mqttsn.regack(11, f["msg_id"])]
        if t == mqttsn.PUBLISH:
            code = mqttsn.ACCEPTED if f["topic_id"] == 11 else mqttsn.INVALID_TOPIC_ID
            return [mqttsn.puback(f["topic_id"], f["msg_id"], code)]
        return []

    # An id kept from before a deep sleep, which the gateway no longer knows.
    client = mqttsn.Client(FakeTransport(gateway), "n", retry_ms=20, topics={4: "db/append/X"})
    client.publish_to("db/append/X", b"[]", 1)
    assert registered == ["db/append/X"]
    assert client.topics == {11: "db/append/X"}
