"""Cross-origin requests (CORS): which web pages served from elsewhere may call the API, and how.

machbase-neo's walk-through is a page opened from a file (its origin is `null`) or served on another port, that
calls the API with `fetch()`. A browser lets such a page read an answer only when the answer says so
(`Access-Control-Allow-Origin`), and before any request that is more than a plain GET or form POST (one with an
`Authorization` header or a JSON body) it asks first, with an `OPTIONS` preflight.

- Reads (`READS`: `/db/query`, `/db/tql`, `/db/watch/...`, every GET under `/api/`) are open to the origins of
  `[http] cors_read_origins` (default `*`: any page).
- Writes (`WRITES`: `/db/write/...`, `/metrics/write`, POST/PUT/DELETE under `/api/`, and DDL through `/db/query`,
  which that route checks itself with `require_write_origin`) are open only to the page's own origin and to those
  of `[http] cors_write_origins` (default none). A cross-origin write from any other origin is refused with 403
  before it runs: a form POST or a text/plain `fetch()` needs no preflight, so a browser would send it and only
  hide the answer. Writes need the token as before; CORS never replaces it.

The decisions are pure functions of (method, path, Origin, Host, policy); `register` puts them into the app as two
bottle hooks. The lists are by path, not by route, so that a route added later under a listed path (`/db/tql`)
follows them without a change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import bottle
import orjson

from gateway.http.base import ApiContext, ApiError

__all__ = [
    "ALLOW_HEADERS",
    "MAX_AGE",
    "READS",
    "WRITES",
    "CorsPolicy",
    "Preflight",
    "classify",
    "normalize",
    "preflight",
    "register",
    "require_write_origin",
    "response_headers",
    "same_origin",
    "write_refusal",
]

Kind = Literal["read", "write"]

# Paths (a prefix when it ends in "/") and the methods that, there, only read or write.
READS: Mapping[str, frozenset[str]] = {
    "/db/query": frozenset({"GET", "HEAD", "POST"}),
    "/db/tql": frozenset({"GET", "HEAD", "POST"}),
    "/db/watch/": frozenset({"GET", "HEAD"}),
    "/api/": frozenset({"GET", "HEAD"}),
}
WRITES: Mapping[str, frozenset[str]] = {
    "/db/write/": frozenset({"POST"}),
    "/metrics/write": frozenset({"POST"}),
    "/api/": frozenset({"POST", "PUT", "DELETE", "PATCH"}),
}
ALLOW_HEADERS = "Authorization, Content-Type"
# Ten minutes: a page does not preflight every request, and a changed configuration is seen soon enough.
MAX_AGE = 600
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    read_origins: tuple[str, ...] = ("*",)
    write_origins: tuple[str, ...] = ()
    token_for_reads: bool = False  # reads carry the token: answer with the origin, never "*"

    @classmethod
    def of(cls, ctx: ApiContext) -> CorsPolicy:
        return cls(
            tuple(normalize(o) for o in ctx.cors_read_origins),
            tuple(normalize(o) for o in ctx.cors_write_origins),
            ctx.token_for_reads,
        )

    def allows(self, kind: Kind, origin: str) -> bool:
        origins = self.read_origins if kind == "read" else self.write_origins
        return "*" in origins or normalize(origin) in origins


@dataclass(frozen=True, slots=True)
class Preflight:
    status: int  # 204, or 403 with `reason`
    headers: dict[str, str]
    reason: str = ""


def normalize(origin: str) -> str:
    """An origin as browsers send it: scheme and host lower-case, no trailing slash."""
    return origin.strip().rstrip("/").lower()


def _methods(table: Mapping[str, frozenset[str]], path: str) -> frozenset[str]:
    for key, methods in table.items():
        if (path.startswith(key) and len(path) > len(key)) if key.endswith("/") else path == key:
            return methods
    return frozenset()


def classify(method: str, path: str) -> Kind | None:
    """Whether `method` on `path` reads, writes, or is no API call that pages on other origins may make."""
    method = method.upper()
    if method in _methods(READS, path):
        return "read"
    if method in _methods(WRITES, path):
        return "write"
    return None


def same_origin(origin: str, host: str) -> bool:
    """Whether the page's `origin` is the gateway itself, as the request's Host header names it (the web page at /
    writes too). `null` (a file, a sandboxed frame) is never the same origin."""
    try:
        page = urlsplit(normalize(origin))
        target = urlsplit(f"//{host.strip().lower()}")
        page_port = page.port or _DEFAULT_PORTS.get(page.scheme)
        target_port = target.port or _DEFAULT_PORTS.get(page.scheme)
    except ValueError:  # a port that is not a number
        return False
    return bool(page.hostname) and page.hostname == target.hostname and page_port == target_port


def _cross(origin: str, host: str) -> bool:
    return bool(origin) and not same_origin(origin, host)


def _allow_origin(kind: Kind, origin: str, policy: CorsPolicy) -> dict[str, str]:
    if kind == "read" and "*" in policy.read_origins and not policy.token_for_reads:
        return {"Access-Control-Allow-Origin": "*"}
    # Browsers refuse "*" for requests with credentials, and writes (and reads with token_for_reads) carry the token:
    # the page's own origin is named instead, and caches told that the answer depends on it.
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if kind == "write" or policy.token_for_reads:
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers


def response_headers(method: str, path: str, origin: str, host: str, policy: CorsPolicy) -> dict[str, str]:
    """The CORS headers of the answer to a request (no preflight): none for same-origin requests, requests without
    an Origin, paths that are no API call and origins not allowed (the browser then hides the answer)."""
    kind = classify(method, path)
    if kind is None:
        return {}
    # Whatever the answer, it depends on the Origin: a cache must not give one page's answer to another page.
    if not _cross(origin, host) or not policy.allows(kind, origin):
        return {"Vary": "Origin"}
    return _allow_origin(kind, origin, policy) | {"Vary": "Origin"}


def _allowed_methods(path: str, origin: str, policy: CorsPolicy) -> list[str]:
    methods = set(_methods(READS, path)) if policy.allows("read", origin) else set()
    if policy.allows("write", origin):
        methods |= _methods(WRITES, path)
    methods.discard("HEAD")  # never preflighted
    return sorted(methods)


def preflight(path: str, origin: str, requested_method: str, host: str, policy: CorsPolicy) -> Preflight:
    """The answer to `OPTIONS path` asking whether `origin` may send `requested_method` there."""
    method = requested_method.strip().upper()
    kind = classify(method, path)
    if kind is None:
        return Preflight(403, {"Vary": "Origin"}, f"{path} takes no cross-origin {method} requests")
    if _cross(origin, host) and not policy.allows(kind, origin):
        return Preflight(403, {"Vary": "Origin"}, _refused(kind, origin))
    headers = _allow_origin(kind, origin, policy) | {
        "Access-Control-Allow-Methods": ", ".join(_allowed_methods(path, origin, policy) or [method]),
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": str(MAX_AGE),
        "Vary": "Origin",
    }
    return Preflight(204, headers)


def _refused(kind: Kind, origin: str) -> str:
    key = "cors_read_origins" if kind == "read" else "cors_write_origins"
    what = "reads" if kind == "read" else "writes"
    return f"{what} from pages of origin {origin} are not allowed: add it to [http] {key} in the config"


def write_refusal(origin: str, host: str, policy: CorsPolicy) -> str | None:
    """Why a write sent with this Origin is refused; None when it may go on (to the token check)."""
    if _cross(origin, host) and not policy.allows("write", origin):
        return _refused("write", origin)
    return None


def _request() -> tuple[str, str]:
    request = bottle.request
    return str(request.get_header("Origin", "")), str(request.get_header("Host", ""))


def require_write_origin(policy: CorsPolicy) -> None:
    """For routes that write only for some requests (DDL through /db/query): refuse a cross-origin one."""
    reason = write_refusal(*_request(), policy)
    if reason is not None:
        raise ApiError(403, reason)


def _answer(status: int, headers: dict[str, str], reason: str) -> bottle.HTTPResponse:
    if status == 204:
        return bottle.HTTPResponse(b"", 204, headers)
    body = orjson.dumps({"success": False, "reason": reason})
    return bottle.HTTPResponse(body, status, headers | {"Content-Type": "application/json"})


def register(app: bottle.Bottle, ctx: ApiContext) -> CorsPolicy:
    """Answers preflights and refuses cross-origin writes before routing, and adds the CORS headers to every answer
    (errors included: a page should read why it was refused). Returns the policy, for `require_write_origin`."""
    policy = CorsPolicy.of(ctx)

    def before() -> None:
        origin, host = _request()
        if not origin:
            return  # not from a browser page, or from the gateway's own page on a GET
        method, path = bottle.request.method, bottle.request.path
        requested = bottle.request.get_header("Access-Control-Request-Method")
        if method == "OPTIONS" and requested:
            answer = preflight(path, origin, requested, host, policy)
            raise _answer(answer.status, answer.headers, answer.reason)
        if classify(method, path) == "write":
            reason = write_refusal(origin, host, policy)
            if reason is not None:
                raise _answer(403, {"Vary": "Origin"}, reason)

    def after() -> None:
        request, response = bottle.request, bottle.response
        if request.method == "OPTIONS":
            return  # answered in full by `before`, or no preflight
        headers = response_headers(request.method, request.path, *_request(), policy)
        vary = headers.pop("Vary", None)
        for name, value in headers.items():
            response.set_header(name, value)
        if vary is not None:
            present = response.get_header("Vary")
            response.set_header("Vary", f"{present}, {vary}" if present and vary not in present else vary)

    app.add_hook("before_request", before)
    app.add_hook("after_request", after)
    return policy
