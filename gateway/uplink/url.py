"""The uplink's URL: mqtt://[user[:password]@]host[:port] or mqtts://... (sans-I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class UrlError(ValueError):
    """A URL the uplink cannot use; the message says why and shows the form."""


@dataclass(frozen=True, slots=True)
class UplinkUrl:
    tls: bool
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        """The URL without its password, for logs and the status."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_url(url: str) -> UplinkUrl:
    form = "give mqtt://[user[:password]@]host[:port] or mqtts://..."
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UrlError(f"{url!r} is not a URL ({exc}): {form}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise UrlError(f"{url!r}: the scheme must be mqtt or mqtts: {form}")
    if not parts.hostname:
        raise UrlError(f"{url!r} names no host: {form}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UrlError(f"{url!r}: nothing may follow the host and port: {form}")
    return UplinkUrl(
        parts.scheme == "mqtts",
        parts.hostname,
        port or DEFAULT_PORTS[parts.scheme],
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password is not None else None,
    )
