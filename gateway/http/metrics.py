"""`GET /metrics` (Prometheus text exposition format 0.0.4) and `GET /api/status` (the same numbers as JSON).

The numbers of the other parts reach the HTTP layer as one plain `Status` (base.py), which app.py copies out of
the broker, the ingest hook and the store at each request: this module knows nothing of their classes. What belongs
to the process itself (memory, disk, uptime) and to the HTTP layer (watchers) is read here. The uplink's figures,
when there is an uplink, are the dict of `Uplink.status()`, read on the event loop (uplink.py).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bottle

from gateway import __version__
from gateway.http.base import ApiContext, ApiError, Body, Status, handler, json_response
from gateway.http.uplink import uplink_status

__all__ = ["Metric", "dir_bytes", "exposition", "gather", "register", "resident_bytes"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "gateway_"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str  # without the "gateway_" prefix
    kind: str  # "counter" or "gauge"
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


def resident_bytes() -> int | None:
    """The process's resident memory (VmRSS), from /proc/self/statm; None where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def dir_bytes(path: Path) -> int:
    """The size of the files under `path` (the data directory: RocksDB's few dozen files and the broker state)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                continue  # RocksDB deleted it meanwhile (a compaction)
    return total


def gather(
    status: Status,
    watchers: int,
    watch_dropped: int,
    now: float | None = None,
    mdns_name: str = "",
    uplink: Mapping[str, Any] | None = None,
) -> list[Metric]:
    """Every metric, in the order /metrics lists them; `uplink` is `Uplink.status()`, None without an uplink."""
    now = time.time() if now is None else now
    s = status
    metrics = [
        Metric("info", "gauge", "The gateway's version, as a label.", 1, (("version", __version__),)),
        Metric("start_time_seconds", "gauge", "When the gateway started, in seconds since 1970.", s.started_at),
        Metric("uptime_seconds", "gauge", "Seconds since the gateway started.", max(0.0, now - s.started_at)),
        Metric("mqtt_clients_connected", "gauge", "MQTT clients connected now.", s.mqtt_clients_connected),
        Metric("mqtt_clients_maximum", "gauge", "The most MQTT clients connected at once.", s.mqtt_clients_maximum),
        Metric("mqtt_connections_refused_total", "counter", "MQTT connections refused.", s.mqtt_connections_refused),
        Metric("mqtt_messages_received_total", "counter", "PUBLISH packets received.", s.mqtt_messages_received),
        Metric("mqtt_messages_sent_total", "counter", "PUBLISH packets sent.", s.mqtt_messages_sent),
        Metric(
            "mqtt_messages_dropped_total",
            "counter",
            "Messages dropped because a client's queue was full.",
            s.mqtt_messages_dropped,
        ),
        Metric(
            "mqtt_publish_rejected_total",
            "counter",
            "Publishes refused (ACL, a bad ingest payload, a full disk).",
            s.mqtt_publish_rejected,
        ),
        Metric(
            "mqtt_protocol_errors_total", "counter", "Connections closed for a protocol error.", s.mqtt_protocol_errors
        ),
        Metric("mqtt_received_bytes_total", "counter", "Bytes received from MQTT clients.", s.mqtt_bytes_received),
        Metric("mqtt_sent_bytes_total", "counter", "Bytes sent to MQTT clients.", s.mqtt_bytes_sent),
        Metric(
            "mqttsn_clients_connected",
            "gauge",
            "MQTT-SN clients connected now, sleeping ones included.",
            s.mqttsn_clients_connected,
        ),
        Metric("mqttsn_clients_asleep", "gauge", "MQTT-SN clients asleep now (§6.14).", s.mqttsn_clients_asleep),
        Metric(
            "mqttsn_datagrams_received_total",
            "counter",
            "MQTT-SN datagrams and serial frames received.",
            s.mqttsn_datagrams_received,
        ),
        Metric(
            "mqttsn_datagrams_malformed_total",
            "counter",
            "MQTT-SN datagrams and frames dropped as malformed (each logged with its sender).",
            s.mqttsn_datagrams_malformed,
        ),
        Metric(
            "mqttsn_publish_congested_total",
            "counter",
            "MQTT-SN publishes refused with 'congestion' (QoS 0: dropped) while the store was behind.",
            s.mqttsn_publish_congested,
        ),
        Metric("ingest_messages_total", "counter", "Ingest messages stored.", s.ingest_messages),
        Metric("ingest_readings_total", "counter", "Readings stored from ingest messages.", s.ingest_readings),
        Metric(
            "ingest_rejected_total", "counter", "Ingest messages refused (bad payload, store error).", s.ingest_rejected
        ),
        Metric("store_batches_total", "counter", "Write batches committed (group commit).", s.store_batches),
        Metric("store_writes_total", "counter", "Keys written or deleted by committed batches.", s.store_writes),
        Metric(
            "store_sync_seconds_total",
            "counter",
            "Seconds spent writing durable (fsynced) batches; divided by store_syncs_total, the fsync latency.",
            s.store_sync_seconds,
        ),
        Metric("store_syncs_total", "counter", "Durable (fsynced) batches written.", s.store_syncs),
        Metric("http_watchers", "gauge", "Open /db/watch event streams.", watchers),
        Metric(
            "http_watch_dropped_total",
            "counter",
            "Readings not sent to /db/watch clients too slow to keep up.",
            watch_dropped,
        ),
    ]
    if mdns_name:
        metrics.append(
            Metric(
                "mdns_info",
                "gauge",
                "The host name advertised over mDNS (<name>.local), as a label; absent while none is.",
                1,
                (("name", mdns_name),),
            )
        )
    rss = resident_bytes()
    if rss is not None:
        metrics.append(Metric("resident_memory_bytes", "gauge", "Resident memory of the gateway process.", rss))
    try:
        disk = os.statvfs(s.data_dir)
    except OSError:
        pass  # the data directory is gone: the disk metrics are left out rather than made up
    else:
        free, size = disk.f_bavail * disk.f_frsize, disk.f_blocks * disk.f_frsize
        metrics += [
            Metric("disk_free_bytes", "gauge", "Free bytes (for the gateway) on the data directory's disk.", free),
            Metric("disk_size_bytes", "gauge", "Size of the data directory's disk.", size),
            Metric(
                "disk_min_free_bytes",
                "gauge",
                "Below this much free space new readings are refused ([store] min_free_bytes).",
                s.min_free_bytes,
            ),
            Metric("data_bytes", "gauge", "Bytes of files in the data directory.", dir_bytes(s.data_dir)),
        ]
    if uplink is not None:
        metrics += uplink_metrics(uplink)
    return metrics


def uplink_metrics(uplink: Mapping[str, Any]) -> list[Metric]:
    """The uplink's figures (`Uplink.status()`). Per-table samples exist only for the tables that have some: none at
    all while nothing waits, nothing was dropped, nothing was refused."""
    metrics = [
        Metric(
            "uplink_connected",
            "gauge",
            "1 while the uplink is connected to the upstream broker, else 0.",
            int(bool(uplink["connected"])),
        ),
        Metric(
            "uplink_connect_attempts_total",
            "counter",
            "Attempts to connect to the upstream broker.",
            uplink["connect_attempts"],
        ),
        Metric(
            "uplink_commands_received_total",
            "counter",
            "Commands received from the upstream and published here.",
            uplink["commands_received"],
        ),
    ]
    forwarding = uplink.get("forwarding")
    if forwarding is not None:
        oldest = forwarding["oldest_waiting_seconds"]
        metrics += _per_table(
            "uplink_backlog_readings",
            "gauge",
            "Readings stored and not yet forwarded, per table.",
            forwarding["backlog_by_table"],
        )
        metrics += [
            Metric(
                "uplink_oldest_waiting_seconds",
                "gauge",
                "Seconds since the oldest reading not yet forwarded arrived; 0 when none waits.",
                0 if oldest is None else oldest,
            ),
            Metric(
                "uplink_forwarded_readings_total",
                "counter",
                "Readings forwarded and acknowledged by the upstream.",
                forwarding["forwarded"],
            ),
            Metric(
                "uplink_messages_total",
                "counter",
                "Messages of readings forwarded and acknowledged by the upstream.",
                forwarding["messages"],
            ),
        ]
        metrics += _per_table(
            "uplink_dropped_readings_total",
            "counter",
            "Readings deleted (by retention, or with their table) before they could be forwarded, per table.",
            forwarding["dropped_by_table"],
        )
        metrics += _per_table(
            "uplink_refused_readings_total",
            "counter",
            "Readings the upstream refused (MQTT 5 reason codes) and that are not sent again, per table.",
            forwarding["refused_by_table"],
        )
    bridge = uplink.get("bridge")
    if bridge is not None:
        metrics += [
            Metric(
                "uplink_bridge_sent_total", "counter", "Local messages sent up by the topic bridge.", bridge["sent"]
            ),
            Metric(
                "uplink_bridge_queued_messages",
                "gauge",
                "Local messages of the topic bridge waiting to go up or to be acknowledged.",
                bridge["queued"],
            ),
        ]
    return metrics


def exposition(metrics: Iterable[Metric]) -> str:
    """The Prometheus text format 0.0.4: HELP and TYPE, then the samples, per metric; the samples of one metric
    (its label values: one per table) follow each other, under one HELP and TYPE."""
    lines = []
    previous = ""
    for metric in metrics:
        name = PREFIX + metric.name
        text = metric.help.replace("\\", "\\\\").replace("\n", "\\n")
        if name != previous:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {metric.kind}"]
        previous = name
        labels = ",".join(f'{key}="{_label_value(value)}"' for key, value in metric.labels)
        lines.append(f"{name}{{{labels}}} {_number(metric.value)}" if labels else f"{name} {_number(metric.value)}")
    return "\n".join(lines) + "\n"


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def register(app: bottle.Bottle, ctx: ApiContext) -> None:
    handle = handler(ctx)

    def current(uplink: Mapping[str, Any] | None) -> list[Metric]:
        if ctx.status is None:
            raise ApiError(503, "status figures are not available in this gateway")
        hub = ctx.watch
        watchers, dropped = (hub.watchers, hub.dropped) if hub else (0, 0)
        return gather(ctx.status(), watchers, dropped, mdns_name=ctx.mdns_name(), uplink=uplink)

    def prometheus(started: float) -> Body:
        text = exposition(current(uplink_status(ctx)))
        bottle.response.content_type = CONTENT_TYPE
        return text

    def api_status(started: float) -> Body:
        uplink = uplink_status(ctx)
        # Labelled metrics carry text (the version, the mDNS name, a table's name): it is given beside the figures
        # instead, and the uplink's backlog as its total.
        figures: dict[str, object] = {metric.name: metric.value for metric in current(uplink) if not metric.labels}
        mdns_name = ctx.mdns_name() or None
        listeners = [{"name": name, "host": host, "port": port} for name, host, port in ctx.listeners()]
        answer = {
            "success": True,
            "version": __version__,
            "name": ctx.name,
            "mdns_name": mdns_name,
            "listeners": listeners,
            "uplink": _uplink_summary(uplink),
        }
        return json_response(200, {**answer, "status": figures})

    app.route("/metrics", "GET", handle(prometheus))
    app.route("/api/status", "GET", handle(api_status))


def _uplink_summary(uplink: Mapping[str, Any] | None) -> dict[str, object]:
    """The uplink in a few words, for /api/status: /api/uplink has the rest."""
    if uplink is None:
        return {"enabled": False}
    forwarding = uplink.get("forwarding")
    return {
        "enabled": True,
        "connected": uplink["connected"],
        "backlog": None if forwarding is None else forwarding["backlog"],
        "last_error": uplink["last_error"],
    }


def _per_table(name: str, kind: str, help_text: str, counts: dict[str, int]) -> list[Metric]:
    """One sample per table, labelled with its name."""
    return [Metric(name, kind, help_text, count, (("table", table),)) for table, count in counts.items()]
