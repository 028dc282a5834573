"""The MQTT-SN gateway over IPv6, seen from outside: a client on ::1 publishes and goes on after a restart; in a
network namespace of its own (a veth pair: IPv6 multicast does not work on lo) a gateway on its default bind
0.0.0.0 is discovered over IPv6 multicast and serves IPv6 and IPv4 clients; `ipv6 = false` opens nothing on IPv6.

The namespaces are made as tests/netns.py says: on a thread of the test, which needs root, as CI has."""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode
from tests.conftest import Gateway
from tests.netns import in_new_network_namespace
from tests.rawmqtt import connect_packet

T0 = 1_700_000_000_000_000_000
GATEWAY_SIDE, CLIENT_SIDE = "v0", "v1"  # the two ends of the veth pair
# A veth pair, up. No duplicate address detection: link-local addresses usable at once, not after about 2 s. The
# IPv4 discovery group is joined on the interface the route to it names: the gateway needs one.
VETH_PAIR = (
    "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad && "
    f"ip link set lo up && ip link add {GATEWAY_SIDE} type veth peer name {CLIENT_SIDE} && "
    f"ip link set {GATEWAY_SIDE} up && ip link set {CLIENT_SIDE} up && "
    f"ip route add 224.0.0.0/4 dev {GATEWAY_SIDE}"
)


class SnClient:
    """MQTT-SN over UDP to one address: (host, port) over IPv4, (host, port, flowinfo, scope_id) over IPv6."""

    def __init__(self, address: tuple[Any, ...]) -> None:
        self.sock = socket.socket(socket.AF_INET6 if len(address) == 4 else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5)
        self.address = address

    def send(self, message: codec.Message) -> None:
        self.sock.sendto(codec.encode(message), self.address)

    def receive(self) -> codec.Message:
        data, _ = self.sock.recvfrom(65535)
        return codec.decode(data)

    def connect_and_register(self, client_id: str, topic: str) -> int:
        self.send(codec.Connect(client_id, 600, clean_session=False))
        assert self.receive() == codec.ConnAck(ReturnCode.ACCEPTED)
        self.send(codec.Register(0, 1, topic))
        regack = self.receive()
        assert isinstance(regack, codec.RegAck) and regack.return_code == ReturnCode.ACCEPTED
        return regack.topic_id

    def publish(self, topic_id: int, msg_id: int, readings: list[Any]) -> None:
        self.send(codec.Publish(topic_id, msg_id, json.dumps(readings).encode(), qos=1))
        assert self.receive() == codec.PubAck(topic_id, msg_id, ReturnCode.ACCEPTED)

    def close(self) -> None:
        self.sock.close()


def rows(host: str, gateway: Gateway, sql: str) -> Any:
    url = f"http://{host}:{gateway.endpoints['http']}/db/query?" + urllib.parse.urlencode({"q": sql})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["data"]["rows"]


def closed(address: tuple[Any, ...]) -> bool:
    """True if a datagram to `address` gets ICMP "port unreachable": nothing listens there."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.settimeout(2)
        probe.connect(address)
        probe.send(codec.encode(codec.SearchGw(1)))
        try:
            probe.recv(64)
        except ConnectionRefusedError:
            return True
        return False


def test_a_client_on_ipv6_loopback_publishes_and_goes_on_after_a_restart(
    gateway_factory: Callable[..., Gateway],
) -> None:
    gateway = gateway_factory(bind="::1")
    for name, port in gateway.endpoints.items():
        assert f"{name}=::1:{port}" in gateway.log()
    # MQTT and HTTP listen on ::1 as well: a CONNECT is accepted, and the readings are read back below.
    with socket.create_connection(("::1", gateway.mqtt_port), timeout=5) as mqtt:
        mqtt.sendall(connect_packet("v6-mqtt"))
        assert mqtt.recv(4) == b"\x20\x02\x00\x00"
    client = SnClient(("::1", gateway.mqttsn_port, 0, 0))
    try:
        topic_id = client.connect_and_register("v6-sensor", "db/append/SN6")
        client.publish(topic_id, 1, [["t", T0, 1.0]])
        assert rows("[::1]", gateway, "select name, time, value from sn6") == [["t", T0, 1.0]]

        gateway.restart()  # the client keeps its socket: its IPv6 address is its session key, kept in the state

        client.publish(topic_id, 2, [["t", T0 + 1, 2.0]])
        assert rows("[::1]", gateway, "select value from sn6") == [[1.0], [2.0]]
        assert "1 clients go on from before the restart" in gateway.log()
    finally:
        client.close()


def link_local(interface: str) -> str:
    command = ["ip", "-6", "-o", "addr", "show", "dev", interface, "scope", "link"]
    shown = subprocess.run(command, check=True, capture_output=True, text=True)
    return shown.stdout.split()[3].partition("/")[0]  # "3: v0    inet6 fe80::.../64 scope link ..."


def test_discovery_and_clients_over_ipv6_multicast_next_to_ipv4(gateway_factory: Callable[..., Gateway]) -> None:
    """§6.1 on IPv6, Paho's defaults (ff02::1, port 1883): ADVERTISE comes from the gateway's link-local address and
    port, a SEARCHGW to the group gets GWINFO from there, and a client then publishes to that address."""

    def body() -> None:
        gateway = gateway_factory("[mqttsn]\ngateway_id = 7\nadvertise_interval = 1\n", bind="0.0.0.0")
        joined = re.search(r"MQTT-SN discovery on \[ff02::1\]:1883 on (.*)", gateway.log())
        assert joined and sorted(joined[1].split(", ")) == [GATEWAY_SIDE, CLIENT_SIDE]  # not lo: it cannot multicast
        scope = socket.if_nametoindex(CLIENT_SIDE)  # the clients are on the other end of the veth pair
        gateway_address = (link_local(GATEWAY_SIDE), gateway.mqttsn_port, 0, scope)
        group = socket.inet_pton(socket.AF_INET6, "ff02::1")
        listener = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        asker = SnClient(("ff02::1", 1883, 0, scope))
        ipv6, ipv4 = SnClient(gateway_address), SnClient(("127.0.0.1", gateway.mqttsn_port))
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("::", 1883))
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group + struct.pack("@I", scope))
            listener.settimeout(5)
            heard: list[tuple[codec.Message, tuple[Any, ...]]] = []
            while (codec.Advertise(7, 1), gateway_address) not in heard:
                data, sender = listener.recvfrom(64)  # times out if no ADVERTISE crosses the veth pair
                heard.append((codec.decode(data), sender))

            # Only the copy that crossed the veth pair, not one looped back on the client's side.
            asker.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            asker.send(codec.SearchGw(1))
            answer, where = asker.sock.recvfrom(64)
            assert (codec.decode(answer), where) == (codec.GwInfo(7), gateway_address)

            topic_id = ipv6.connect_and_register("v6-discovered", "db/append/SNLINK")
            ipv6.publish(topic_id, 1, [["ipv6", T0, 6.0]])
            topic_id = ipv4.connect_and_register("v4-beside", "db/append/SNLINK")
            ipv4.publish(topic_id, 1, [["ipv4", T0, 4.0]])
            assert rows("127.0.0.1", gateway, "select name, value from snlink order by name") == [
                ["ipv4", 4.0],
                ["ipv6", 6.0],
            ]
        finally:
            for client in (asker, ipv6, ipv4):
                client.close()
            listener.close()

    in_new_network_namespace(body, VETH_PAIR)


def test_ipv6_false_opens_nothing_on_ipv6(gateway_factory: Callable[..., Gateway]) -> None:
    def body() -> None:
        gateway = gateway_factory("[mqttsn]\nipv6 = false\n", bind="0.0.0.0")
        assert closed(("::1", gateway.mqttsn_port, 0, 0))
        assert closed(("::1", 1883, 0, 0))  # nor the IPv6 discovery group's port
        assert "IPv6" not in gateway.log()
        ipv4 = SnClient(("127.0.0.1", gateway.mqttsn_port))
        try:
            ipv4.send(codec.SearchGw(1))
            assert ipv4.receive() == codec.GwInfo(1)
        finally:
            ipv4.close()

    # In a namespace of its own: a gateway on 0.0.0.0 then sends its ADVERTISE to no real network.
    in_new_network_namespace(body, VETH_PAIR)
