"""The shared library (firmware-samples/lib) under real MicroPython: the WebAssembly port from npm
(@micropython/micropython-webassembly-pyscript, pinned in tests/firmware/node/package.json) run by Node. Each
test_* function of tests/firmware/mpy/ runs there (and under CPython as a plain pytest test); and the bytes the
library builds under MicroPython are sent to a running gateway, which accepts them: the readings are read back
over HTTP. The mDNS query it builds is read by python-zeroconf's parser, and a python-zeroconf answer by it."""

from __future__ import annotations

import ast
import binascii
import functools
import json
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from zeroconf import ServiceInfo, const

# python-zeroconf's DNS message classes, from the modules that define them (its package does not re-export them).
from zeroconf._dns import DNSAddress, DNSPointer, DNSQuestion, DNSService, DNSText
from zeroconf._protocol.incoming import DNSIncoming
from zeroconf._protocol.outgoing import DNSOutgoing

from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode, TopicIdType
from tests.conftest import Gateway
from tests.firmware.board import LIB, query

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
MPY_TESTS = HERE / "mpy"


def micropython(script: Path, *mounts: str) -> str:
    node = shutil.which("node")
    assert node, "Node.js is needed to run MicroPython's WebAssembly port (Debian: nodejs)"
    assert (NODE_DIR / "node_modules" / "@micropython" / "micropython-webassembly-pyscript").exists(), (
        "MicroPython's WebAssembly port is not installed: `make test` runs `npm ci` in tests/firmware/node"
    )
    done = subprocess.run(
        [node, "run.mjs", str(script), f"{LIB}:/lib", f"{MPY_TESTS}:/tests", *mounts],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"MicroPython failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@functools.cache
def results() -> tuple[dict[str, str], str]:
    """`PASS`/`FAIL ...` by module.function, and the whole output (tracebacks), from one MicroPython run."""
    output = micropython(MPY_TESTS / "runner.py")
    outcome: dict[str, str] = {}
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASS", "FAIL"):
            name = rest.split(":")[0]
            outcome[name] = line
    return outcome, output


def mpy_tests() -> list[str]:
    names = []
    for path in sorted(MPY_TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        names += [f"{path.stem}.{name}" for name in functions if name.startswith("test_")]
    return names


def test_it_is_micropython_1_2x() -> None:
    _, output = results()
    assert "RESULT micropython 3.4.0; MicroPython v1.2" in output, output


@pytest.mark.parametrize("name", mpy_tests())
def test_under_micropython(name: str) -> None:
    outcome, output = results()
    assert outcome.get(name, "").startswith("PASS"), f"{name}: {outcome.get(name, 'did not run')}\n{output}"


def zeroconf_answer() -> bytes:
    """What python-zeroconf sends for our one-shot query: PTR, with SRV, TXT and A as additional records."""
    out = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA, multicast=False, id_=0x4242)
    out.add_question(DNSQuestion("_mqtt._tcp.local.", const._TYPE_PTR, const._CLASS_IN))
    instance = "Gateway Two._mqtt._tcp.local."
    out.add_answer_at_time(DNSPointer("_mqtt._tcp.local.", const._TYPE_PTR, const._CLASS_IN, 4500, instance), 0)
    srv = DNSService(instance, const._TYPE_SRV, const._CLASS_IN | 0x8000, 120, 0, 0, 18830, "gw-two.local.")
    out.add_additional_answer(srv)
    text = ServiceInfo(
        "_mqtt._tcp.local.", instance, properties={"txtvers": "1", "ingest": "db/put/", "auth": "0"}
    ).text
    txt = DNSText(instance, const._TYPE_TXT, const._CLASS_IN | 0x8000, 4500, text)
    out.add_additional_answer(txt)
    a = DNSAddress("gw-two.local.", const._TYPE_A, const._CLASS_IN | 0x8000, 120, socket.inet_aton("10.1.2.3"))
    out.add_additional_answer(a)
    packets = out.packets()
    assert len(packets) == 1
    return packets[0]


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    data = tmp_path_factory.mktemp("mpy-data")
    (data / "answer.bin").write_bytes(zeroconf_answer())
    lines: dict[str, list[str]] = {}
    for line in micropython(MPY_TESTS / "emit.py", f"{data}:/data").splitlines():
        name, _, value = line.partition(" ")
        lines.setdefault(name, []).append(value)
    return lines


def test_its_mdns_query_reads_right_to_python_zeroconf(emitted: dict[str, list[str]]) -> None:
    incoming = DNSIncoming(binascii.unhexlify(emitted["QUERY"][0]))
    assert incoming.valid and incoming.is_query() and incoming.id == 0x4242
    [question] = incoming.questions
    assert (question.name, question.type, question.unicast) == ("_mqtt._tcp.local.", const._TYPE_PTR, True)


def test_it_reads_a_python_zeroconf_answer(emitted: dict[str, list[str]]) -> None:
    assert json.loads(emitted["MDNS"][0]) == [
        {
            "instance": "gateway two._mqtt._tcp.local",
            "host": "gw-two.local",
            "port": 18830,
            "address": "10.1.2.3",
            "txt": {"txtvers": "1", "ingest": "db/put/", "auth": "0"},
        }
    ]


def test_its_mqttsn_session_is_accepted_by_the_gateway(
    emitted: dict[str, list[str]], gateway_factory: Callable[..., Gateway]
) -> None:
    gateway = gateway_factory('[mqttsn]\npredefined_topics = { 9 = "db/append/WASM_Q" }\n')
    frames = {name: [binascii.unhexlify(v) for v in values] for name, values in emitted.items() if name != "MDNS"}
    # The gateway's own codec reads every frame as what it was meant to be.
    assert codec.decode(frames["CONNECT"][0]) == codec.Connect("wasm-node", 60, clean_session=True)
    assert codec.decode(frames["REGISTER"][0]) == codec.Register(0, 1, "db/append/WASM")
    qos_m1 = codec.decode(frames["PUBLISH_QOS_M1"][0])
    assert isinstance(qos_m1, codec.Publish) and (qos_m1.qos, qos_m1.topic_id_type) == (-1, TopicIdType.PREDEFINED)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        address = ("127.0.0.1", gateway.mqttsn_port)

        def exchange(frame: bytes) -> codec.Message:
            sock.sendto(frame, address)
            return codec.decode(sock.recv(2048))

        assert exchange(frames["CONNECT"][0]) == codec.ConnAck(ReturnCode.ACCEPTED)
        regack = exchange(frames["REGISTER"][0])
        assert regack == codec.RegAck(1, 1, ReturnCode.ACCEPTED), (
            f"{regack}: the MicroPython PUBLISH frames were built for topic id 1"
        )
        for publish in frames["PUBLISH"]:
            assert exchange(publish) == codec.PubAck(1, 2, ReturnCode.ACCEPTED)
        sock.sendto(frames["PUBLISH_QOS_M1"][0], address)
        assert exchange(frames["DISCONNECT"][0]) == codec.Disconnect()

    rows = query(gateway, "select name, time, value from wasm")
    assert sorted(rows) == sorted(
        [["wasm-node.humidity", 1_700_000_000_000_000_000 + i * 1_000_000_000, 40.25] for i in range(5)]
        + [["wasm-node.temperature", 1_700_000_000_000_000_000 + i * 1_000_000_000, 21.5 + i] for i in range(5)]
    )
    assert query(gateway, "select name, time, value from wasm_q") == [
        ["wasm-node.battery", 1_700_000_000_000_000_000, 3.7]
    ]
