# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
# Under MicroPython (tests/firmware/node/run.mjs): the bytes the library builds for one node's session, one line
# each ("NAME hex"), for tests/firmware/test_micropython.py to send to a running gateway; and what the library
# makes of a python-zeroconf answer (/data/answer.bin), as JSON.
import binascii
import json

import mdns
import mqttsn
import payload

T = 1700000000000000000


def out(name, data):
    print(name, binascii.hexlify(data).decode())


out("CONNECT", mqttsn.connect("wasm-node", 60))
out("REGISTER", mqttsn.register(1, "db/append/WASM"))
rows = []
for i in range(5):
    rows += payload.rows("wasm-node", {"temperature": 21.5 + i, "humidity": 40.25}, T + i * 1000000000, 2)
for _count, body in payload.batches(rows, 4096):
    out("PUBLISH", mqttsn.publish(1, body, qos=1, msg_id=2))
battery = payload.batch(payload.rows("wasm-node", {"battery": 3.7}, T, 2))
out("PUBLISH_QOS_M1", mqttsn.publish(9, battery, qos=-1, topic_type=mqttsn.TOPIC_PREDEFINED))
out("DISCONNECT", mqttsn.disconnect())
out("QUERY", mdns.build_query([("_mqtt._tcp.local", mdns.PTR)], qid=0x4242))
with open("/data/answer.bin", "rb") as f:
    print("MDNS", json.dumps(mdns.services(mdns.parse(f.read())[2], "_mqtt._tcp.local")))
