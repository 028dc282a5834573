"""The configuration file: every option, its default, its validation and its documentation, in one place.

One TOML file, one table per part of the gateway. Unknown tables or keys and values of the wrong type or range
are refused at start with the file, the key and the reason. `gateway config` prints this schema as a commented
TOML file holding every default (docs/configuration.md is that output).
"""

from __future__ import annotations

import os
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from gateway.mqtt.topics import filter_error
from gateway.uplink.url import UrlError, parse_url

NEVER = 4_294_967_295


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file, the key and what is wrong."""


def _opt(
    default: Any,
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    metadata = {"doc": doc, "min": minimum, "max": maximum, "choices": choices}
    if isinstance(default, dict):  # a table in TOML; each Config gets its own copy
        return field(default_factory=lambda: dict(default), metadata=metadata)
    if isinstance(default, list):  # an array in TOML; each Config gets its own copy
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(slots=True)
class GatewayOptions:
    data_dir: str = _opt(
        "",
        "Where the databases live. Empty: $STATE_DIRECTORY when run by systemd (/var/lib/gateway), "
        "otherwise the user's data directory (e.g. ~/.local/share/gateway).",
    )
    bind: str = _opt("0.0.0.0", "Address every listener binds to (0.0.0.0: all IPv4 interfaces).")
    log_level: str = _opt("info", "Least severe log level written.", choices=("debug", "info", "warning", "error"))


@dataclass(slots=True)
class MqttOptions:
    port: int = _opt(
        1883, "TCP port of the MQTT listener; 0 picks a free port (logged at start).", minimum=0, maximum=65535
    )
    tls: bool = _opt(False, "Also listen for MQTT over TLS (needs certfile and keyfile).")
    tls_port: int = _opt(8883, "TCP port of the MQTT-over-TLS listener; 0 picks a free port.", minimum=0, maximum=65535)
    certfile: str = _opt("", "PEM certificate chain of the TLS listener.")
    keyfile: str = _opt("", "PEM private key of the TLS listener.")
    cafile: str = _opt("", "PEM CA certificates that client certificates are checked against (optional).")
    require_certificate: bool = _opt(False, "Refuse TLS clients that present no valid certificate (needs cafile).")
    ws_enabled: bool = _opt(
        True,
        "Also listen for MQTT over WebSocket (browser dashboards, MQTT.js), with the same users, ACL and limits "
        "as TCP clients.",
    )
    ws_port: int = _opt(
        8083, "TCP port of the MQTT-over-WebSocket listener; 0 picks a free port.", minimum=0, maximum=65535
    )
    ws_path: str = _opt("/mqtt", "HTTP path of MQTT over WebSocket: clients connect to ws://<host>:<ws_port><ws_path>.")
    allow_anonymous: bool = _opt(True, "Accept clients that give no user name. Turn off once users are set up.")
    password_file: str = _opt("", "Password file written by `gateway passwd`; empty: no user accounts.")
    acl_file: str = _opt("", "Topic access rules in mosquitto's acl_file format; empty: everyone may do anything.")
    max_packet_size: int = _opt(
        1_048_576,
        "Largest MQTT packet accepted, in bytes; larger ones close the connection.",
        minimum=64,
        maximum=268_435_460,
    )
    max_connections: int = _opt(1024, "Most clients connected at once; more are refused as 'server busy'.", minimum=1)
    receive_maximum: int = _opt(
        100,
        "Most unacknowledged QoS 1/2 messages accepted from one client "
        "(MQTT 5 Receive Maximum); its socket is not read while more are pending.",
        minimum=1,
        maximum=65535,
    )
    max_inflight_messages: int = _opt(
        100, "Most unacknowledged QoS 1/2 messages sent to one client at once.", minimum=1, maximum=65535
    )
    max_backlog_bytes: int = _opt(
        512 << 10,
        "Most bytes of publishes being stored (payloads plus ~500 bytes each), all MQTT clients together, and "
        "as much for MQTT-SN; beyond it clients are not read until the store catches up, which bounds memory "
        "(MQTT-SN frames that arrive regardless, from a serial line, get 'congestion' beyond twice it).",
        minimum=1024,
    )
    max_queued_messages: int = _opt(
        1000,
        "Most messages waiting for one client (offline or slow). Further "
        "messages are dropped, and counted in $SYS/broker/messages/dropped.",
        minimum=1,
    )
    max_subscriptions_per_client: int = _opt(
        1000, "Most subscriptions one client may hold; more are refused (MQTT 5 reason 0x97).", minimum=1
    )
    max_queued_bytes: int = _opt(
        8 << 20, "Most payload bytes waiting for one client; further messages are dropped and counted.", minimum=1
    )
    max_retained_bytes: int = _opt(
        32 << 20,
        "Most payload bytes of retained messages in all (they are kept in memory); a retained message that would "
        "exceed it is routed but not kept.",
        minimum=0,
    )
    queue_qos0_messages: bool = _opt(False, "Also queue QoS 0 messages for offline persistent sessions.")
    max_keepalive: int = _opt(
        0, "Longest keep-alive granted to MQTT 5 clients, in seconds; 0: no limit.", minimum=0, maximum=65535
    )
    topic_alias_maximum: int = _opt(
        10, "Topic aliases an MQTT 5 client may use towards the gateway.", minimum=0, maximum=65535
    )
    max_session_expiry: int = _opt(
        NEVER,
        "Longest time a persistent session outlives its client, in seconds "
        f"({NEVER}: never expires; also used for MQTT 3.1.1 clean-session-0 clients).",
        minimum=0,
        maximum=NEVER,
    )
    retain_available: bool = _opt(True, "Keep retained messages.")
    sys_interval: float = _opt(
        10.0, "Seconds between updates of the $SYS/broker/... topics; 0 turns them off.", minimum=0
    )
    connect_timeout: float = _opt(10.0, "Seconds a new connection may take to send its CONNECT.", minimum=0.1)


@dataclass(slots=True)
class StoreOptions:
    commit_interval: float = _opt(
        0.002,
        "Least time between two commits of readings, in seconds: durable (QoS 1/2) readings wait at most about this "
        "long plus one fsync for their acknowledgement, and share that fsync.",
        minimum=0,
        maximum=1,
    )
    auto_create_tables: bool = _opt(True, "Create a table on its first write; off: writes to unknown tables fail.")
    write_buffer_bytes: int = _opt(4 << 20, "RocksDB memtable size (two may exist at once).", minimum=1 << 20)
    min_free_bytes: int = _opt(
        64 << 20,
        "Refuse new readings while the data directory's file system has less free space than this; 0: never.",
        minimum=0,
    )
    retention_days: float = _opt(
        0.0,
        "Delete readings older than this many days, checked hourly; 0: keep them. A table can set its own "
        "(PUT /api/tables/<name>/retention).",
        minimum=0,
    )
    minute_rollup_days: float = _opt(
        0.0,
        "Delete 1-minute rollups older than this many days; 0: keep them (about 70 bytes a minute a series).",
        minimum=0,
    )
    hour_rollup_days: float = _opt(0.0, "Delete 1-hour rollups older than this many days; 0: keep them.", minimum=0)
    block_cache_bytes: int = _opt(8 << 20, "RocksDB block cache for queries.", minimum=1 << 20)


@dataclass(slots=True)
class HttpOptions:
    port: int = _opt(8080, "TCP port of the HTTP API; 0 picks a free port (logged at start).", minimum=0, maximum=65535)
    token: str = _opt(
        "",
        "Token that writes, table changes and backups need (Authorization: Bearer <token>); empty: writes and table "
        "changes are refused, backups are served to the board itself only.",
    )
    token_for_reads: bool = _opt(False, "Require the token for every request, reads included.")
    cors_read_origins: list[str] = _opt(  # noqa: RUF009 - a field with a default_factory
        ["*"],
        'Origins of web pages elsewhere (another port, another host; "null": a page opened from a file) that '
        "may read through the API in a browser (CORS): /db/query, /db/watch, GET /api/...; "
        '"*": any page. Like "http://192.168.1.20:8000", without a path; [] allows none.',
    )
    cors_write_origins: list[str] = _opt(  # noqa: RUF009 - a field with a default_factory
        [],
        "Origins of web pages elsewhere that may also write (/db/write, /metrics/write, CREATE and DROP through "
        "/db/query, POST/PUT/DELETE /api/...), with the token as always; the gateway's own page always may. "
        "Cross-origin writes from other pages are refused (403).",
    )


@dataclass(slots=True)
class MqttSnOptions:
    enabled: bool = _opt(True, "Run the MQTT-SN gateway (UDP) for devices that cannot afford TCP.")
    port: int = _opt(
        1884, "UDP port of the MQTT-SN gateway; 0 picks a free port (logged at start).", minimum=0, maximum=65535
    )
    ipv6: bool = _opt(
        True,
        "With [gateway] bind = 0.0.0.0, also serve MQTT-SN and its discovery over IPv6 (on ::, the same port); a host "
        "without IPv6 logs a warning and serves IPv4. An IPv6 bind address serves IPv6 only, whatever this says.",
    )
    gateway_id: int = _opt(1, "GwId in GWINFO and ADVERTISE (§5.4.1).", minimum=0, maximum=255)
    max_clients: int = _opt(1000, "Most MQTT-SN clients at once; more get CONNACK 'congestion'.", minimum=1)
    max_inflight: int = _opt(
        8, "Most unacknowledged QoS 1/2 messages sent to one MQTT-SN client at once.", minimum=1, maximum=65535
    )
    max_message_size: int = _opt(
        1024, "Largest MQTT-SN message sent to a client; larger deliveries are dropped.", minimum=16, maximum=65535
    )
    retry_interval: float = _opt(
        10.0, "Seconds before an unacknowledged PUBLISH goes again (T_RETRY, §6.13).", minimum=0.1, maximum=3600
    )
    max_retries: int = _opt(
        3, "Tries without an acknowledgement before a client is taken as lost (N_RETRY).", minimum=1
    )
    multicast: bool = _opt(True, "Discovery (§6.1): ADVERTISE on, and answer SEARCHGW from, the multicast group.")
    multicast_group: str = _opt("225.1.1.1", "Multicast group of ADVERTISE and SEARCHGW (Paho's default).")
    multicast_group_v6: str = _opt(
        "ff02::1",
        "IPv6 multicast group of ADVERTISE and SEARCHGW (Paho's default), on multicast_port, joined on each "
        "interface that is up and can multicast.",
    )
    multicast_port: int = _opt(1883, "UDP port of the multicast group (Paho's default).", minimum=1, maximum=65535)
    advertise_interval: int = _opt(
        900, "Seconds between ADVERTISEs (T_ADV, §7.2: more than 15 minutes on a real network).", minimum=1
    )
    serial_device: str = _opt(
        "", "Serial device of a radio coordinator or MQTT-SN device (e.g. /dev/ttyAMA0, /dev/ttyUSB0); empty: none."
    )
    serial_baudrate: int = _opt(9600, "Baud rate of the serial device.", minimum=50, maximum=4_000_000)
    serial_framing: str = _opt(
        "length",
        "How MQTT-SN travels on the serial line: 'length' (frames with their own Length, perhaps in the forwarder "
        "encapsulation) or 'xbee' (Digi XBee API mode 2, AP=2).",
        choices=("length", "xbee"),
    )
    predefined_topics: dict[str, str] = _opt(  # noqa: RUF009 - a field with a default_factory
        {},
        'Pre-defined topic ids that every client may use without REGISTER (§6.7): { 1 = "db/append/SENSORS" }.',
    )
    client_topics: dict[str, dict[str, str]] = _opt(  # noqa: RUF009 - a field with a default_factory
        {},
        "Pre-defined topic ids of single clients, by client id; they come before predefined_topics for that "
        'client: { "boiler-1" = { 5 = "db/append/BOILER" } }.',
    )


@dataclass(slots=True)
class IngestOptions:
    sensors_prefix: str = _opt("sensors/", "Topic prefix of the small-firmware topic: <prefix><device>.")
    sensors_table: str = _opt("SENSORS", "Table that readings from the sensors topic go to.")


@dataclass(slots=True)
class MdnsOptions:
    enabled: bool = _opt(
        True,
        "Advertise the gateway over mDNS / DNS-SD, so that sensors and browsers find it by name: <name>.local and "
        "the services _mqtt._tcp (_mqtts._tcp with TLS), _http._tcp and _mqtt-sn._udp (docs/discovery.md).",
    )
    name: str = _opt(
        "",
        "Host name and service instance name: letters, digits and hyphens. Empty: the system's host name, or "
        '"gateway" when that is a generic one (raspberrypi, localhost, debian, ...). When another device on the '
        "network has it, the gateway takes <name>-2, <name>-3, ... (logged, and in /api/status).",
    )
    interfaces: str = _opt(
        "",
        'Interfaces to advertise on, by name, separated by commas (e.g. "wlan0" or "eth0, wlan0"); empty: every '
        "interface that is up and can multicast, except loopback. Their addresses of the [gateway] bind family are "
        "advertised (IPv4 for 0.0.0.0, IPv6 for ::), also as they change; a bind to one address advertises it alone.",
    )


@dataclass(slots=True)
class UplinkOptions:
    url: str = _opt(
        "",
        "Upstream MQTT broker to forward readings to: mqtt://[user[:password]@]host[:port] (port 1883) or "
        "mqtts://... (TLS, port 8883); empty: no uplink. `gateway serve --uplink URL` sets it (docs/uplink.md).",
    )
    version: str = _opt("3.1.1", "MQTT version spoken to the upstream.", choices=("3.1.1", "5"))
    client_id: str = _opt("", "Client id at the upstream; empty: the gateway's name (as [mdns] name).")
    username: str = _opt("", "User name at the upstream (or in the URL).")
    password_file: str = _opt(
        "",
        "File holding the upstream password (its first line), instead of a password in the URL; keep it readable by "
        "the gateway only.",
    )
    cafile: str = _opt("", "PEM CA certificates the upstream's certificate is checked against; empty: the system's.")
    certfile: str = _opt("", "PEM client certificate chain, for upstreams that want one (with keyfile).")
    keyfile: str = _opt("", "PEM private key of certfile.")
    keepalive: int = _opt(60, "Keep-alive interval in seconds (PINGREQ when idle).", minimum=5, maximum=65535)
    topic_prefix: str = _opt(
        "",
        'Prefix of every topic sent up and of the command topic, e.g. "site1/": readings go to '
        "<prefix>db/append/<TABLE>.",
    )
    forward_readings: bool = _opt(
        True,
        "Forward every reading stored from now on, as db/append messages; they wait in the store while the "
        "upstream is away, and go up in the order they arrived, at least once.",
    )
    batch_size: int = _opt(1000, "Most readings in one message.", minimum=1, maximum=100_000)
    max_delay: float = _opt(
        1.0, "Longest wait, in seconds, for a batch to fill before it is sent partly full.", minimum=0, maximum=3600
    )
    compress: str = _opt(
        "none", "Payload compression: gzip sends db/append/<TABLE>:json:gzip.", choices=("none", "gzip")
    )
    max_rate: float = _opt(
        0.0,
        "Most readings forwarded per second, e.g. on a metered link or to leave the board's CPU to ingest while a "
        "backlog catches up; 0: as fast as the upstream acknowledges.",
        minimum=0,
    )
    max_inflight: int = _opt(
        8, "Messages sent and not yet acknowledged by the upstream (fewer if it says so).", minimum=1, maximum=65535
    )
    commands: bool = _opt(
        True,
        "Subscribe to <prefix>cmd/<name>/# upstream and publish each command here as cmd/..., so sensors (also "
        "sleeping MQTT-SN ones, on waking) receive commands sent from the central system.",
    )
    bridge: list[str] = _opt(  # noqa: RUF009 - a field with a default_factory
        [],
        "Local topic filters whose messages are also sent up, as they are published, under the prefix (e.g. "
        '["alerts/#"]); queued in the broker while the upstream is away.',
    )
    reconnect_max: float = _opt(
        300.0, "Longest wait, in seconds, between attempts to reach the upstream (backoff from 1 s).", minimum=1
    )


@dataclass(slots=True)
class Config:
    gateway: GatewayOptions = field(default_factory=GatewayOptions)
    mqtt: MqttOptions = field(default_factory=MqttOptions)
    store: StoreOptions = field(default_factory=StoreOptions)
    http: HttpOptions = field(default_factory=HttpOptions)
    mqttsn: MqttSnOptions = field(default_factory=MqttSnOptions)
    ingest: IngestOptions = field(default_factory=IngestOptions)
    mdns: MdnsOptions = field(default_factory=MdnsOptions)
    uplink: UplinkOptions = field(default_factory=UplinkOptions)
    source: str = "built-in defaults"

    def data_path(self) -> Path:
        if self.gateway.data_dir:
            return Path(self.gateway.data_dir).expanduser()
        state_dir = os.environ.get("STATE_DIRECTORY")  # set by systemd's StateDirectory=
        if state_dir:
            return Path(state_dir.split(":")[0])
        import platformdirs  # noqa: PLC0415 - a daemon's memory is precious; only needed outside systemd

        return Path(platformdirs.user_data_dir("gateway", appauthor=False))

    def resolve(self, path: str) -> Path:
        """A path from the file, relative to the file's folder."""
        p = Path(path).expanduser()
        if not p.is_absolute() and self.source not in ("built-in defaults", ""):
            return Path(self.source).parent / p
        return p


# One DNS label (RFC 1123), as <name>.local needs.
_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
# A web origin as browsers send it in Origin headers (scheme://host[:port]), "null" (a file) or "*" (any).
_ORIGIN = re.compile(r"\*|null|https?://(\[[0-9A-Fa-f:.]+\]|[^\s/?#:\[\]@]+)(:\d{1,5})?", re.ASCII | re.IGNORECASE)
_SECTIONS = {f.name: f for f in fields(Config) if f.name != "source"}


def _check_value(where: str, spec: Any, value: Any) -> Any:
    types = {
        "str": str,
        "int": int,
        "bool": bool,
        "float": float,
        "dict[str, str]": dict,
        "dict[str, dict[str, str]]": dict,
        "list[str]": list,
    }
    expected = spec.type if isinstance(spec.type, type) else types[spec.type]
    if spec.type == "list[str]" and isinstance(value, list) and not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    meta = spec.metadata
    if meta["min"] is not None and value < meta["min"]:
        raise ConfigError(f"{where}: {value!r} is below the minimum of {meta['min']}")
    if meta["max"] is not None and value > meta["max"]:
        raise ConfigError(f"{where}: {value!r} is above the maximum of {meta['max']}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(meta['choices'])}")
    return value


def parse(data: dict[str, Any], source: str) -> Config:
    config = Config(source=source)
    for section_name, table in data.items():
        section_field = _SECTIONS.get(section_name)
        if section_field is None:
            known = ", ".join(f"[{s}]" for s in _SECTIONS)
            raise ConfigError(f"{source}: unknown table [{section_name}] (known: {known})")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {section_name} must be a table, like [{section_name}]")
        section = getattr(config, section_name)
        specs = {f.name: f for f in fields(section)}
        for key, value in table.items():
            spec = specs.get(key)
            if spec is None:
                raise ConfigError(f"{source}: unknown key {key!r} in [{section_name}] (known: {', '.join(specs)})")
            setattr(section, key, _check_value(f"{source}: [{section_name}] {key}", spec, value))
    _check_consistency(config)
    return config


def _check_consistency(config: Config) -> None:
    mqtt = config.mqtt
    if mqtt.tls and not (mqtt.certfile and mqtt.keyfile):
        raise ConfigError(f"{config.source}: [mqtt] tls = true needs certfile and keyfile")
    if mqtt.require_certificate and not mqtt.cafile:
        raise ConfigError(f"{config.source}: [mqtt] require_certificate = true needs cafile")
    path = mqtt.ws_path
    if not path.startswith("/") or any(c.isspace() or c in "?#" for c in path):
        raise ConfigError(
            f'{config.source}: [mqtt] ws_path {path!r}: give an HTTP path without query or spaces, like "/mqtt"'
        )
    for key in ("cors_read_origins", "cors_write_origins"):
        for origin in getattr(config.http, key):
            if not _ORIGIN.fullmatch(origin.rstrip("/")):
                raise ConfigError(
                    f'{config.source}: [http] {key} {origin!r}: give an origin like "http://192.168.1.20:8000" '
                    '(scheme, host, port; no path), "null" or "*"'
                )
    _check_predefined(f"{config.source}: [mqttsn] predefined_topics", config.mqttsn.predefined_topics)
    for client_id, topics in config.mqttsn.client_topics.items():
        where = f"{config.source}: [mqttsn] client_topics {client_id!r}"
        if not isinstance(topics, dict):
            raise ConfigError(f'{where}: give the client\'s topic ids as a table, like {{ 5 = "db/append/BOILER" }}')
        _check_predefined(where, topics)
    _check_uplink(config)
    if config.mdns.name and not _HOST_NAME.fullmatch(config.mdns.name):
        raise ConfigError(
            f"{config.source}: [mdns] name {config.mdns.name!r}: give a host name of letters, digits and inner "
            'hyphens, at most 63 characters, like "greenhouse-gw"'
        )


def _check_uplink(config: Config) -> None:
    uplink = config.uplink
    where = f"{config.source}: [uplink]"
    if uplink.url:
        try:
            parse_url(uplink.url)
        except UrlError as exc:
            raise ConfigError(f"{where} url {exc}") from None
    if bool(uplink.certfile) != bool(uplink.keyfile):
        raise ConfigError(f"{where} certfile and keyfile go together: give both, or neither")
    if any(c in uplink.topic_prefix for c in "+#"):
        raise ConfigError(f'{where} topic_prefix {uplink.topic_prefix!r}: no wildcards, like "site1/"')
    for topic_filter in uplink.bridge:
        error = filter_error(topic_filter)
        if error is not None:
            raise ConfigError(f'{where} bridge {topic_filter!r}: {error}; give a topic filter, like "alerts/#"')


def _check_predefined(where: str, topics: dict[str, Any]) -> None:
    for key, topic in topics.items():
        if not key.isdigit() or not 1 <= int(key) <= 0xFFFE:
            raise ConfigError(f"{where} {key!r}: a topic id is a number from 1 to 65534")
        if not isinstance(topic, str) or not topic or any(c in topic for c in "+#"):
            raise ConfigError(f'{where} {key!r}: give a topic name (no wildcards), like "db/append/SENSORS"')


def load(path: Path | None) -> Config:
    """Read a configuration file; None means the built-in defaults."""
    if path is None:
        return parse({}, "built-in defaults")
    import tomllib  # noqa: PLC0415 - not loaded when running on the built-in defaults

    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    return parse(data, str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + " }" if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def documented_defaults() -> str:
    """The whole schema as a TOML file of defaults, each option preceded by its documentation."""
    lines = ["# gateway configuration: every option with its default value.", ""]
    for section_name, section_field in _SECTIONS.items():
        lines.append(f"[{section_name}]")
        assert section_field.default_factory is not MISSING
        defaults = section_field.default_factory()
        for spec in fields(defaults):
            meta = spec.metadata
            lines.append(f"# {meta['doc']}")
            if meta["choices"]:
                lines.append(f"# One of: {', '.join(meta['choices'])}.")
            lines.append(f"{spec.name} = {_toml_value(getattr(defaults, spec.name))}")
        lines.append("")
    return "\n".join(lines)
