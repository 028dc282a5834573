"""`GET /api/uplink`: the state of the uplink to the upstream MQTT broker (docs/http.md), for the web page's
Overview and for scripts. The figures are `Uplink.status()` (gateway/uplink/link.py) as they are, read on the event
loop, which owns them; app.py hands that function over as `ApiContext.uplink`, so that this module needs none of the
uplink's classes. /metrics and /api/status show the same figures (metrics.py).
"""

from __future__ import annotations

from typing import Any

import bottle

from gateway.http.base import ApiContext, Body, call_on_loop, handler, json_response

__all__ = ["register", "uplink_status"]


def uplink_status(ctx: ApiContext) -> dict[str, Any] | None:
    """The uplink's status, read on the event loop; None when no uplink is configured. From a request thread."""
    if ctx.uplink is None:
        return None
    return call_on_loop(ctx, ctx.uplink)


def register(app: bottle.Bottle, ctx: ApiContext) -> None:
    handle = handler(ctx)

    def api_uplink(started: float) -> Body:
        status = uplink_status(ctx)
        if status is None:
            return json_response(200, {"success": True, "enabled": False})
        return json_response(200, {"success": True, "enabled": True, **status})

    app.route("/api/uplink", "GET", handle(api_uplink))
