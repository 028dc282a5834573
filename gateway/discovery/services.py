"""The services the gateway advertises and the TXT records in them: what a sensor reads before it connects
(docs/discovery.md). Keys and values are short, for sensors that parse them in a few lines of C."""

from __future__ import annotations

from dataclasses import dataclass

# The gateway's listeners, by the name they have in the start-up line, and their DNS-SD service types.
TYPES = {
    "mqtt": "_mqtt._tcp.local.",
    "mqtts": "_mqtts._tcp.local.",
    "mqtt-sn": "_mqtt-sn._udp.local.",
    "http": "_http._tcp.local.",
}
TXT_VERSION = "1"  # txtvers (RFC 6763 §6.7): raised when a key changes meaning


@dataclass(frozen=True, slots=True)
class Facts:
    """What a sensor needs to know, from the configuration."""

    version: str  # the gateway's
    ingest_prefix: str  # readings go to <prefix><TABLE>
    sensors_prefix: str  # one JSON object of fields goes to <prefix><device>
    auth_required: bool  # clients without a user name are refused (MQTT-SN clients have none)
    gateway_id: int  # MQTT-SN GwId, as in ADVERTISE and GWINFO
    ws_path: str  # where MQTT over WebSocket answers on its port


@dataclass(frozen=True, slots=True)
class Service:
    type: str  # "_mqtt._tcp.local."
    port: int
    txt: dict[str, str]


def services(endpoints: list[tuple[str, str, int]], facts: Facts) -> list[Service]:
    """A service for each listener in `endpoints` ((name, host, port) with the ports actually bound)."""
    common = {"txtvers": TXT_VERSION, "ver": facts.version}
    mqtt = {
        **common,
        "ingest": facts.ingest_prefix,
        "sensors": facts.sensors_prefix,
        "auth": "1" if facts.auth_required else "0",
    }
    http = {**common, "path": "/", "api": "/api/openapi.json"}
    # MQTT over WebSocket has no DNS-SD service type of its own; a browser dashboard that found the web page learns
    # from it where to connect.
    for name, _host, port in endpoints:
        if name == "mqtt-ws":
            http |= {"ws": str(port), "wspath": facts.ws_path}
    txt = {"mqtt": mqtt, "mqtts": mqtt, "mqtt-sn": {**mqtt, "gwid": str(facts.gateway_id)}, "http": http}
    return [Service(TYPES[name], port, txt[name]) for name, _host, port in endpoints if name in TYPES]
