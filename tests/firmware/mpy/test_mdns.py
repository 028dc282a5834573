# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
"""lib/mdns.py: the one-shot DNS-SD query's bytes (RFC 1035 §4, RFC 6762 §5.4) and the parsing of answers with
name compression and additional records. Runs under MicroPython (WebAssembly port) and CPython; the live exchange
with a python-zeroconf responder is in tests/firmware/test_mdns_query.py."""

import struct

import mdns
from mpytest import raises


def test_the_query_asks_for_a_unicast_answer():
    query = mdns.build_query([("_mqtt._tcp.local", mdns.PTR)], qid=0x1234)
    assert query == (
        b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # id, flags 0 (a query), one question
        b"\x05_mqtt\x04_tcp\x05local\x00"
        b"\x00\x0c\x80\x01"  # PTR, class IN with the QU bit
    )
    assert mdns.build_query([("a.local", mdns.A)], unicast=False)[-2:] == b"\x00\x01"
    raises(ValueError, mdns.encode_name, "a..local")
    raises(ValueError, mdns.encode_name, "x" * 64 + ".local")


def record(name, rtype, ttl, rdata, rclass=1):
    return name + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


QUESTION = b"\x05_mqtt\x04_tcp\x05local\x00\x00\x0c\x00\x01"  # at offset 12: "local" is at 23
PTR_AT = 12 + len(QUESTION)
INSTANCE = struct.pack("!H", 0xC000 | (PTR_AT + 12))  # a pointer to the PTR record's data: gw._mqtt._tcp.local


def answer(extra=b"", count=4, qid=0x1234):
    """An answer as a responder writes it: the question repeated (§6.7), PTR in the answer section, SRV, TXT and A
    as additional records, names compressed against earlier ones."""
    header = struct.pack("!HHHHHH", qid, 0x8400, 1, 1, 0, count - 1)
    ptr = record(b"\xc0\x0c", mdns.PTR, 4500, b"\x02gw\xc0\x0c")
    srv = record(INSTANCE, mdns.SRV, 120, struct.pack("!HHH", 0, 0, 1883) + b"\x02GW\xc0\x17", 0x8001)
    txt = record(INSTANCE, mdns.TXT, 4500, b"\x0aingest=db/\x06auth=0\x0bINGEST=nope\x04flag")
    a = record(b"\x02gw\xc0\x17", mdns.A, 120, bytes((192, 168, 1, 10)), 0x8001)
    return header + QUESTION + ptr + srv + txt + a + extra


def test_an_answer_with_compressed_names_and_additional_records():
    qid, flags, records = mdns.parse(answer())
    assert qid == 0x1234 and flags & 0x8000
    assert records[0] == ("_mqtt._tcp.local", mdns.PTR, 4500, "gw._mqtt._tcp.local")
    assert records[1] == ("gw._mqtt._tcp.local", mdns.SRV, 120, (0, 0, 1883, "gw.local"))  # names lower-cased
    assert records[2][3] == {"ingest": "db/", "auth": "0", "flag": True}  # keys case-insensitive, first one wins
    assert records[3] == ("gw.local", mdns.A, 120, "192.168.1.10")
    found = mdns.services(records, "_MQTT._tcp.local.")
    assert found == [
        {
            "instance": "gw._mqtt._tcp.local",
            "host": "gw.local",
            "port": 1883,
            "address": "192.168.1.10",
            "txt": {"ingest": "db/", "auth": "0", "flag": True},
        }
    ]


def test_an_answer_without_additional_records_is_not_resolved_yet():
    header = struct.pack("!HHHHHH", 0x1234, 0x8400, 1, 1, 0, 0)
    only_ptr = header + answer()[12 : PTR_AT + 12 + 5]  # the question, then the PTR record alone
    _, _, records = mdns.parse(only_ptr)
    found = mdns.services(records, "_mqtt._tcp.local")
    assert found == [{"instance": "gw._mqtt._tcp.local", "host": None, "port": None, "address": None, "txt": {}}]


def test_a_goodbye_withdraws_the_service():
    goodbye = record(b"\xc0\x0c", mdns.PTR, 0, b"\x02gw\xc0\x0c")
    _, _, records = mdns.parse(answer(goodbye, count=5))
    assert mdns.services(records, "_mqtt._tcp.local") == []


def test_broken_packets_are_refused():
    loop = struct.pack("!HHHHHH", 1, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 1, 0)
    raises(ValueError, mdns.parse, loop)  # a name that points at itself
    raises(ValueError, mdns.parse, answer()[:-3])  # cut short
    raises(ValueError, mdns.parse, b"\x00" * 11)
    beyond = struct.pack("!HHHHHH", 1, 0x8400, 0, 1, 0, 0) + b"\xc0\xff"
    raises(ValueError, mdns.parse, beyond)
