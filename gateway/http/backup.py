"""`GET /api/backup`: a backup of the gateway's data as a .tar.gz download.

`ApiContext.backup` makes the archive (a consistent copy of the store and the broker state) and returns its path.
The file is opened and then unlinked before the first byte is sent: the open handle keeps the data readable until
the download ends, and the disk space comes back when it ends, however it ends (finished, client gone, gateway
killed): no archive is ever left behind on the card.

A backup holds everything that was ever written, so it needs the token; a gateway without a token lets the board
itself (a request from a loopback address) take one, so that a local admin can always make a backup.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from typing import BinaryIO

import bottle

from gateway.http.base import ApiContext, ApiError, Body, handler, require_token

__all__ = ["is_loopback", "register"]

log = logging.getLogger("gateway.http")


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6 (::ffff:127.0.0.1)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def register(app: bottle.Bottle, ctx: ApiContext) -> None:
    handle = handler(ctx)

    def api_backup(started: float) -> Body:
        if ctx.token:
            require_token(ctx, "a backup")
        # REMOTE_ADDR is the peer of the socket; bottle's remote_addr would believe an X-Forwarded-For header.
        elif not is_loopback(bottle.request.environ.get("REMOTE_ADDR", "")):
            raise ApiError(
                403,
                "a backup needs a token, and none is configured: set [http] token in the config, or ask from the "
                "board itself (http://127.0.0.1/...)",
            )
        if ctx.backup is None:
            raise ApiError(503, "backups are not available in this gateway")
        try:
            path = ctx.backup()
        except Exception as exc:
            log.exception("the backup failed")
            raise ApiError(500, f"the backup failed: {exc}") from None
        try:
            archive: BinaryIO = path.open("rb")
            size = os.fstat(archive.fileno()).st_size
        except OSError as exc:
            raise ApiError(500, f"the backup archive cannot be read: {exc}") from None
        finally:
            path.unlink(missing_ok=True)
        response = bottle.response
        response.content_type = "application/gzip"
        response.set_header("Content-Length", str(size))
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        response.set_header("Content-Disposition", f'attachment; filename="gateway-backup-{stamp}.tar.gz"')
        # bottle hands an open file to the WSGI server's file wrapper, which sends it and closes it.
        return archive

    app.route("/api/backup", "GET", handle(api_backup))
