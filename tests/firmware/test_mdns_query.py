"""firmware-samples/lib/mdns.py under CPython, live: its one-shot DNS-SD queries from an ephemeral port are
answered by python-zeroconf responders on loopback (by unicast to that port, RFC 6762 §6.7), also while another
responder holds port 5353 on the same host, as the board's own mDNS responder does; with several gateways it picks
the one named; and the second-round SRV/TXT and A queries work on their own. In a network namespace of the
test's own (tests/netns.py), so root."""

from __future__ import annotations

import importlib
import socket
import sys
import time
from types import ModuleType

from zeroconf import IPVersion, ServiceInfo, Zeroconf

from tests.firmware.board import LIB
from tests.firmware.responder import Responder
from tests.netns import LOOPBACK_MULTICAST, in_new_network_namespace


def mdns() -> ModuleType:
    if str(LIB) not in sys.path:
        sys.path.insert(0, str(LIB))
    return importlib.import_module("mdns")


def test_beside_the_boards_own_responder_and_between_two_gateways() -> None:
    def body() -> None:
        lib = mdns()
        # The board's own responder: it holds port 5353 and answers for the board's name.
        board = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        board_service = ServiceInfo(
            "_http._tcp.local.",
            "esp32-node._http._tcp.local.",
            addresses=[socket.inet_aton("127.0.0.1")],
            port=80,
            server="esp32-node.local.",
        )
        board.register_service(board_service, cooperating_responders=True)
        try:
            with Responder("gw-a", 1883), Responder("gw-b", 2883, {"ingest": "db/append/", "auth": "1"}):
                found = lib.discover("_mqtt._tcp.local", 1000, prefer="gw-b")
                assert found == {
                    "instance": "gw-b._mqtt._tcp.local",
                    "host": "gw-b.local",
                    "port": 2883,
                    "address": "127.0.0.1",
                    "txt": {"ingest": "db/append/", "auth": "1"},
                }
                assert lib.discover("_mqtt._tcp.local", 1000, prefer="GW-A")["port"] == 1883
                assert lib.discover("_mqtt._tcp.local", 1000)["port"] in (1883, 2883)

                # The follow-up questions, when an answer leaves the SRV or A record out (§12 allows it).
                querier = lib.Querier()
                try:
                    querier.ask([("gw-a._mqtt._tcp.local", lib.SRV), ("gw-a._mqtt._tcp.local", lib.TXT)], 1000)
                    querier.ask([("gw-a.local", lib.A)], 1000)
                    kinds = {(name, rtype) for name, rtype, _ttl, _value in querier.records}
                finally:
                    querier.close()
                assert {
                    ("gw-a._mqtt._tcp.local", lib.SRV),
                    ("gw-a._mqtt._tcp.local", lib.TXT),
                    ("gw-a.local", lib.A),
                } <= kinds
        finally:
            board.unregister_all_services()
            board.close()

    in_new_network_namespace(body, LOOPBACK_MULTICAST)


def test_no_gateway_no_answer() -> None:
    def body() -> None:
        lib = mdns()
        started = time.monotonic()
        assert lib.discover("_mqtt._tcp.local", 300, tries=2) is None
        assert time.monotonic() - started < 2
        assert lib.resolve_local("nobody", 1883) is None  # CPython without nss-mdns: no .local names

    in_new_network_namespace(body, LOOPBACK_MULTICAST)
