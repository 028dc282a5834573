"""`GET /api/devices` and `GET /api/errors`: every client seen, and the last publishes refused with their reasons,
for the web page's Devices and Errors views and for scripts. The numbers come from the gateway's Activity (app.py
hands it over); a device's battery, when it has a battery series, from the store.
"""

from __future__ import annotations

from typing import Any

import bottle

from gateway.activity import Activity
from gateway.http.base import ApiContext, ApiError, Body, call_on_loop, handler, json_response
from gateway.store.query import latest

# Series names that mean a device's battery: <client id> followed by one of these, as the firmware samples name
# theirs (garden-1.battery) and as many other firmwares do.
BATTERY_SUFFIXES = (".battery", ".batt", ".vbat", ".battery_v", "_battery", "/battery")


def _activity(ctx: ApiContext) -> Activity:
    if ctx.activity is None:
        raise ApiError(503, "client activity is not available in this gateway")
    return ctx.activity


def _batteries(ctx: ApiContext, devices: list[dict[str, Any]]) -> None:
    """Adds "battery" to each device: the latest reading of its battery series, or None."""
    names = {table.name: set(ctx.store.series_names(table.name)) for table in ctx.store.tables()}
    for device in devices:
        device["battery"] = None
        candidates = [device["client_id"] + suffix for suffix in BATTERY_SUFFIXES]
        for table, series in names.items():
            found = next((name for name in candidates if name in series), None)
            if found is None:
                continue
            readings = latest(ctx.store, table, [found])
            if readings:
                _name, time_ns, value = readings[0]
                device["battery"] = {"table": table, "series": found, "value": value, "time": time_ns}
                break


def register(app: bottle.Bottle, ctx: ApiContext) -> None:
    handle = handler(ctx)

    def api_devices(started: float) -> Body:
        devices = call_on_loop(ctx, _activity(ctx).devices)
        _batteries(ctx, devices)
        return json_response(200, {"success": True, "devices": devices})

    def api_errors(started: float) -> Body:
        return call_on_loop(ctx, errors_answer, _activity(ctx))

    def errors_answer(activity: Activity) -> Body:
        errors = [
            {
                "time": refusal.time,
                "client_id": refusal.client_id,
                "protocol": refusal.protocol,
                "address": refusal.address,
                "topic": refusal.topic,
                "reason": refusal.reason,
            }
            for refusal in reversed(list(activity.errors))
        ]
        return json_response(200, {"success": True, "total": activity.refusals, "errors": errors})

    app.route("/api/devices", "GET", handle(api_devices))
    app.route("/api/errors", "GET", handle(api_errors))
