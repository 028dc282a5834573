"""mDNS / DNS-SD discovery, seen from outside. Each test runs in a network namespace of its own (tests/netns.py)
whose loopback carries multicast, so that nothing reaches the host's network and gateways of parallel tests do not
meet. A separate process with zeroconf plays the sensor: it knows nothing of the gateway but what mDNS tells it.

Loopback holds three addresses, one for each "host": gateways on 127.0.0.1 and 127.0.0.2, the sensor on 127.0.0.3.
Each mDNS stack then has a socket of its own for the unicast answers to its questions (RFC 6762 §5.4); stacks that
share an address and port 5353 would each get a random part of them, as no two devices on a network do."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import __version__
from tests.conftest import REPO, Gateway, wait_until
from tests.netns import LOOPBACK_MULTICAST, in_new_network_namespace

T0 = 1_700_000_000_000_000_000
MQTT, HTTP, MQTTSN = "_mqtt._tcp.local.", "_http._tcp.local.", "_mqtt-sn._udp.local."
MDNS_PORT_HEX = f":{5353:04X} "  # as /proc/net/udp shows a local port
SENSOR, OTHER_HOST = "127.0.0.3", "127.0.0.2"
HOSTS = f"{LOOPBACK_MULTICAST} && ip addr add {OTHER_HOST}/8 dev lo && ip addr add {SENSOR}/8 dev lo"


def sensor(request_json: str) -> None:
    """The sensor's process. `request`: {"types": [...], "count": n, "wait": seconds, "host": "<name>.local." or null,
    "publish": readings or null}. It browses each type until it has found `count` services of it (or `wait` has
    passed), resolves them and the host, and publishes the readings (QoS 1) to the first _mqtt._tcp service found, on
    the topic its TXT names. Prints what it found as JSON."""
    import paho.mqtt.client as paho
    import zeroconf
    from paho.mqtt.enums import CallbackAPIVersion
    from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

    request = json.loads(request_json)
    zc = Zeroconf(interfaces=[SENSOR])
    names: dict[str, list[str]] = {service_type: [] for service_type in request["types"]}
    enough = threading.Event()

    def found(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Added:
            names[service_type].append(name)
        if all(len(hits) >= request["count"] for hits in names.values()):
            enough.set()

    browsers = [ServiceBrowser(zc, service_type, handlers=[found]) for service_type in names]
    try:
        enough.wait(request["wait"])
        answer: dict[str, Any] = {"services": {}}
        for service_type, found_names in names.items():
            answer["services"][service_type] = []
            for name in sorted(found_names):
                info = zc.get_service_info(service_type, name, 3000)
                assert info is not None, f"{name} was found, but does not resolve"
                answer["services"][service_type].append(
                    {
                        "name": name,
                        "server": info.server,
                        "addresses": info.parsed_addresses(),
                        "port": info.port,
                        "txt": info.decoded_properties,
                    }
                )
        if request["host"]:
            resolver = zeroconf.AddressResolverIPv4(request["host"])  # type: ignore[attr-defined]  # not in __all__
            resolver.request(zc, 3000)
            answer["host"] = resolver.parsed_addresses()
        if request["publish"]:
            mqtt = answer["services"][MQTT][0]
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id="mdns-sensor")
            client.connect(mqtt["addresses"][0], mqtt["port"])
            client.loop_start()
            topic = mqtt["txt"]["ingest"] + "MDNS"
            client.publish(topic, json.dumps(request["publish"]), qos=1).wait_for_publish(10)
            client.disconnect()
            client.loop_stop()
    finally:
        for browser in browsers:
            browser.cancel()
        zc.close()
    print(json.dumps(answer))


def ask_sensor(
    types: list[str], *, count: int = 1, wait: float = 10, host: str | None = None, publish: Any = None
) -> Any:
    request = json.dumps({"types": types, "count": count, "wait": wait, "host": host, "publish": publish})
    code = "import sys; from tests.system.test_mdns import sensor; sensor(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", code, request], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def get_text(gateway: Gateway, path: str) -> str:
    host = "127.0.0.1" if gateway.bind == "0.0.0.0" else gateway.bind
    with urllib.request.urlopen(f"http://{host}:{gateway.endpoints['http']}{path}", timeout=10) as response:
        return str(response.read().decode())


def get_json(gateway: Gateway, path: str) -> Any:
    return json.loads(get_text(gateway, path))


def advertising(gateway: Gateway, name: str, timeout: float = 15) -> None:
    assert wait_until(lambda: f"mDNS: advertising {name}.local" in gateway.log(), timeout), gateway.log()


def udp_ports_open(gateway: Gateway) -> str:
    """The UDP sockets of the gateway's network namespace, as the kernel lists them."""
    assert gateway.process is not None
    return Path(f"/proc/{gateway.process.pid}/net/udp").read_text()


def test_a_sensor_finds_the_gateway_and_publishes_to_the_address_and_port_advertised(
    gateway_factory: Callable[..., Gateway],
) -> None:
    config = '[mdns]\nname = "greenhouse"\n[mqttsn]\ngateway_id = 9\n[ingest]\nsensors_prefix = "things/"\n'

    def body() -> None:
        gateway = gateway_factory(config)  # on 127.0.0.1, ports picked by the kernel
        advertising(gateway, "greenhouse")
        found = ask_sensor([MQTT, HTTP, MQTTSN], host="greenhouse.local.", publish=[["temp", T0, 21.5]])

        mqtt_txt = {"txtvers": "1", "ver": __version__, "ingest": "db/append/", "sensors": "things/", "auth": "0"}
        expected = {
            MQTT: (gateway.mqtt_port, mqtt_txt),
            HTTP: (
                gateway.endpoints["http"],
                {
                    **{"txtvers": "1", "ver": __version__, "path": "/", "api": "/api/openapi.json"},
                    **{"ws": str(gateway.endpoints["mqtt-ws"]), "wspath": "/mqtt"},
                },
            ),
            MQTTSN: (gateway.mqttsn_port, {**mqtt_txt, "gwid": "9"}),
        }
        for service_type, (port, txt) in expected.items():
            assert found["services"][service_type] == [
                {
                    "name": f"greenhouse.{service_type}",
                    "server": "greenhouse.local.",
                    "addresses": ["127.0.0.1"],
                    "port": port,
                    "txt": txt,
                }
            ]
        assert found["host"] == ["127.0.0.1"]

        query = urllib.parse.urlencode({"q": "select name, time, value from mdns"})
        assert get_json(gateway, f"/db/query?{query}")["data"]["rows"] == [["temp", T0, 21.5]]
        assert get_json(gateway, "/api/status")["mdns_name"] == "greenhouse"
        assert 'gateway_mdns_info{name="greenhouse"} 1' in get_text(gateway, "/metrics")

    in_new_network_namespace(body, HOSTS)


def test_a_second_gateway_with_the_same_name_is_renamed_logged_and_shown_in_the_status(
    gateway_factory: Callable[..., Gateway],
) -> None:
    def body() -> None:
        first = gateway_factory('[mdns]\nname = "twin"\n', name="first")
        advertising(first, "twin")
        second = gateway_factory('[mdns]\nname = "twin"\n', name="second", bind=OTHER_HOST)
        advertising(second, "twin-2")
        assert "twin.local is taken on the network, so this gateway is twin-2.local" in second.log()
        assert "twin.local is taken (by another " in second.log()

        assert get_json(first, "/api/status")["mdns_name"] == "twin"
        assert get_json(second, "/api/status")["mdns_name"] == "twin-2"
        found = ask_sensor([MQTT], count=2)["services"][MQTT]
        assert [(service["name"], service["server"], service["port"]) for service in found] == [
            (f"twin-2.{MQTT}", "twin-2.local.", second.mqtt_port),
            (f"twin.{MQTT}", "twin.local.", first.mqtt_port),
        ]

    in_new_network_namespace(body, HOSTS)


def test_a_host_name_that_another_device_answers_for_is_not_taken(gateway_factory: Callable[..., Gateway]) -> None:
    """Another device called lonely.local, with no service of the gateway's types: its address is not this host's."""
    from zeroconf import ServiceInfo, Zeroconf

    def body() -> None:
        other = Zeroconf(interfaces=[OTHER_HOST])
        printer = ServiceInfo(
            "_ipp._tcp.local.",
            "printer._ipp._tcp.local.",
            port=631,
            server="lonely.local.",
            parsed_addresses=["10.9.9.9"],
        )
        try:
            other.register_service(printer)
            gateway = gateway_factory('[mdns]\nname = "lonely"\n')
            advertising(gateway, "lonely-2")
            assert "lonely.local is taken (by a host at 10.9.9.9)" in gateway.log()
            assert ask_sensor([MQTT], host="lonely-2.local.")["host"] == ["127.0.0.1"]
        finally:
            other.close()

    in_new_network_namespace(body, HOSTS)


def test_address_changes_are_advertised_without_a_restart(gateway_factory: Callable[..., Gateway]) -> None:
    """The default bind 0.0.0.0 advertises every address of the chosen interfaces, as they come and go."""

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    def body() -> None:
        gateway = gateway_factory('[mdns]\nname = "mover"\ninterfaces = "lo"\n', bind="0.0.0.0")
        advertising(gateway, "mover")
        assert "mDNS: advertising mover.local at 127.0.0.1, 127.0.0.2, 127.0.0.3:" in gateway.log()

        ip("addr", "add", "10.20.30.40/32", "dev", "lo")
        everywhere = ["10.20.30.40", "127.0.0.1", "127.0.0.2", "127.0.0.3"]
        assert wait_until(lambda: f"mover.local is now at {', '.join(everywhere)}" in gateway.log()), gateway.log()
        found = ask_sensor([MQTT], host="mover.local.")
        assert sorted(found["host"]) == everywhere
        assert sorted(found["services"][MQTT][0]["addresses"]) == everywhere

        ip("addr", "del", "10.20.30.40/32", "dev", "lo")
        assert wait_until(lambda: "mover.local is now at 127.0.0.1, 127.0.0.2, 127.0.0.3\n" in gateway.log())
        assert sorted(ask_sensor([MQTT], host="mover.local.")["host"]) == everywhere[1:]
        assert get_json(gateway, "/api/status")["mdns_name"] == "mover"

    in_new_network_namespace(body, HOSTS)


def test_discovery_turned_off_advertises_nothing(gateway_factory: Callable[..., Gateway]) -> None:
    def body() -> None:
        gateway = gateway_factory("[mdns]\nenabled = false\n")
        assert ask_sensor([MQTT, HTTP, MQTTSN], wait=2)["services"] == {MQTT: [], HTTP: [], MQTTSN: []}
        assert MDNS_PORT_HEX not in udp_ports_open(gateway)
        assert "mDNS" not in gateway.log()
        assert get_json(gateway, "/api/status")["mdns_name"] is None
        assert "gateway_mdns_info" not in get_text(gateway, "/metrics")

    in_new_network_namespace(body, HOSTS)


def test_an_interface_that_cannot_multicast_is_a_warning_not_a_failure(gateway_factory: Callable[..., Gateway]) -> None:
    """Loopback as in a default network namespace (no multicast flag): the gateway warns, serves, sends nothing."""

    def body() -> None:
        gateway = gateway_factory()
        assert wait_until(lambda: "mDNS: nothing to advertise: 127.0.0.1 is not on an interface" in gateway.log())
        assert MDNS_PORT_HEX not in udp_ports_open(gateway)
        assert get_json(gateway, "/api/status")["mdns_name"] is None

    in_new_network_namespace(body, "ip link set lo up")
