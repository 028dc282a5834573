"""Authorization (the ACL file) and the broker's entry point for authentication.

The ACL file uses mosquitto's acl_file layout so that operators coming from mosquitto recognise it; the password
file (passwords.py) is mosquitto's layout with argon2 hashes.  Nothing here knows about asyncio: argon2
verification blocks for tens of milliseconds on a Pi, so the broker runs `Authorizer.authenticate` in a worker
thread.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.mqtt.topics import filter_covers, filter_error, filter_matches, filters_overlap

if TYPE_CHECKING:
    from gateway.mqtt.passwords import PasswordFile


class AuthConfigError(Exception):
    """A password or ACL file cannot be used; the message says where, what is wrong and what to do."""


def read_lines(path: Path, what: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuthConfigError(f"{path}: {what} not found; create it or correct its path in the configuration") from None
    except OSError as e:
        raise AuthConfigError(f"{path}: cannot read the {what} ({e.strerror}); check its permissions") from None
    except UnicodeDecodeError as e:
        raise AuthConfigError(
            f"{path}: the {what} is not UTF-8 text (bad byte at offset {e.start}); save it as UTF-8"
        ) from None
    # Not str.splitlines(): it also splits on characters such as U+2028 that may appear in usernames.
    return [line.removesuffix("\r") for line in text.split("\n")]


def is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


# ---------------------------------------------------------------------------------------------
# ACL


class _Access(enum.Flag):
    READ = enum.auto()
    WRITE = enum.auto()
    DENY = enum.auto()


_ACCESS_WORDS = {
    "read": _Access.READ,
    "write": _Access.WRITE,
    "readwrite": _Access.READ | _Access.WRITE,
    "deny": _Access.DENY,
}
_SUBSTITUTIONS = ("%c", "%u")

# A filter of None means "every topic"; only a deny pattern that cannot be substituted has one.
_Rule = tuple[_Access, str | None]


def _parse_rule(where: str, keyword: str, rest: str) -> tuple[_Access, str]:
    words = rest.split(None, 1)
    if not words:
        raise AuthConfigError(f"{where}: '{keyword}' needs a topic filter (e.g. '{keyword} read sensors/#')")
    if words[0] in _ACCESS_WORDS:
        if len(words) == 1:
            raise AuthConfigError(
                f"{where}: '{keyword} {words[0]}' needs a topic filter after it; for a topic named "
                f"{words[0]!r}, write '{keyword} readwrite {words[0]}'"
            )
        access, topic_filter = _ACCESS_WORDS[words[0]], words[1].strip()
    else:
        access, topic_filter = _ACCESS_WORDS["readwrite"], rest.strip()
        if len(words) > 1:
            raise AuthConfigError(
                f"{where}: {words[0]!r} is not read, write, readwrite or deny, and a topic filter "
                f"without an access word cannot contain spaces; put the access word first "
                f"(e.g. '{keyword} read sensors/#')"
            )
    problem = filter_error(topic_filter)
    if problem is not None:
        raise AuthConfigError(f"{where}: {problem}")
    if keyword == "pattern" and any(
        level not in _SUBSTITUTIONS and any(s in level for s in _SUBSTITUTIONS) for level in topic_filter.split("/")
    ):
        raise AuthConfigError(
            f"{where}: in {topic_filter!r}, '%c' and '%u' must be a whole level (e.g. 'devices/%c/#')"
        )
    return access, topic_filter


def _substitutable(value: str) -> bool:
    # Substituted, '+' or '#' would act as a wildcard and '/' would add levels, letting a client pick
    # an id or username that reaches other clients' topics (mosquitto's CVE-2017-7650); an empty
    # value would share its topics with every other empty one.
    return value != "" and not any(c in value for c in "+#/")


class AclFile:
    """Topic access rules with mosquitto's acl_file semantics (mosquitto.conf(5)).

    `topic` lines before any `user` line apply to anonymous clients, those after `user NAME` to that
    user only; `pattern` lines apply to every client, with whole levels `%c` and `%u` replaced by the
    client id and username.  A deny that applies to the client wins over every grant.  A client whose
    id or username cannot be substituted (empty, or containing '+', '#' or '/') gets nothing from
    patterns using it, and is denied everything by a deny pattern using it.
    """

    def __init__(self) -> None:
        self._anonymous: list[_Rule] = []
        self._users: dict[str, list[_Rule]] = {}
        self._patterns: list[tuple[_Access, str]] = []

    @classmethod
    def load(cls, path: Path) -> AclFile:
        acl = cls()
        section = acl._anonymous
        for lineno, line in enumerate(read_lines(path, "ACL file"), start=1):
            if is_comment_or_blank(line):
                continue
            where = f"{path}:{lineno}"
            keyword, *rest_of_line = line.split(None, 1)
            rest = rest_of_line[0] if rest_of_line else ""
            if keyword == "user":
                username = rest.strip()
                if not username:
                    raise AuthConfigError(f"{where}: 'user' needs a username (e.g. 'user alice')")
                section = acl._users.setdefault(username, [])
            elif keyword == "topic":
                section.append(_parse_rule(where, keyword, rest))
            elif keyword == "pattern":
                acl._patterns.append(_parse_rule(where, keyword, rest))
            else:
                raise AuthConfigError(
                    f"{where}: unknown keyword {keyword!r}; lines must start with 'topic', 'user' or "
                    "'pattern' ('#' starts a comment only at the beginning of a line)"
                )
        return acl

    def may_write(self, username: str | None, client_id: str, topic: str) -> bool:
        """Whether the client may publish to the concrete `topic`."""
        matches = functools.partial(filter_matches, topic=topic)
        return self._allows(username, client_id, _Access.WRITE, matches, matches)

    def may_read(self, username: str | None, client_id: str, topic: str) -> bool:
        """Whether a message on the concrete `topic` may be delivered to the client."""
        matches = functools.partial(filter_matches, topic=topic)
        return self._allows(username, client_id, _Access.READ, matches, matches)

    def may_subscribe(self, username: str | None, client_id: str, topic_filter: str) -> bool:
        """Whether the client may subscribe to `topic_filter`: some read grant must cover the whole
        filter, and no deny may match any topic of it.  So every message a permitted subscription
        delivers passes `may_read` too."""
        return self._allows(
            username,
            client_id,
            _Access.READ,
            functools.partial(filter_covers, inner=topic_filter),
            functools.partial(filters_overlap, second=topic_filter),
        )

    def _allows(
        self,
        username: str | None,
        client_id: str,
        want: _Access,
        granted_by: Callable[[str], bool],
        denied_by: Callable[[str], bool],
    ) -> bool:
        granted = False
        for access, topic_filter in self._rules_for(username, client_id):
            if access is _Access.DENY:
                if topic_filter is None or denied_by(topic_filter):
                    return False
            elif access & want and topic_filter is not None and granted_by(topic_filter):
                granted = True
        return granted

    def _rules_for(self, username: str | None, client_id: str) -> Iterator[_Rule]:
        yield from self._anonymous if username is None else self._users.get(username, [])
        for access, pattern in self._patterns:
            levels = pattern.split("/")
            if username is None and "%u" in levels:
                continue
            values = {"%c": client_id, "%u": username or ""}
            if all(_substitutable(values[level]) for level in levels if level in values):
                yield access, "/".join(values.get(level, level) for level in levels)
            elif access is _Access.DENY:
                # Fail closed: a deny that cannot be worked out for this client denies everything.
                yield access, None


# ---------------------------------------------------------------------------------------------
# What the broker uses


@dataclass(frozen=True)
class Authorizer:
    """The broker's single entry point for authentication and authorization.

    CONNECT rules of `authenticate`:
    - no username: accepted iff `allow_anonymous`;
    - a username but no password file configured: accepted iff `allow_anonymous`.  Nothing vouches
      for such a username, so the ACL treats that client as anonymous; otherwise any client could
      claim another user's ACL section;
    - a username with a password file: the password must verify; `allow_anonymous` does not rescue
      an unknown user or a wrong or missing password.

    Without an ACL file every client may read, write and subscribe to everything.
    `authenticate` blocks for one argon2 verification (tens of ms on a Pi): call it from a worker thread.
    """

    allow_anonymous: bool
    passwords: PasswordFile | None = None
    acl: AclFile | None = None

    def authenticate(self, username: str | None, password: bytes | None) -> bool:
        if username is None or self.passwords is None:
            return self.allow_anonymous
        return password is not None and self.passwords.verify(username, password)

    def may_write(self, username: str | None, client_id: str, topic: str) -> bool:
        return self.acl is None or self.acl.may_write(self._acl_username(username), client_id, topic)

    def may_read(self, username: str | None, client_id: str, topic: str) -> bool:
        return self.acl is None or self.acl.may_read(self._acl_username(username), client_id, topic)

    def may_subscribe(self, username: str | None, client_id: str, topic_filter: str) -> bool:
        return self.acl is None or self.acl.may_subscribe(self._acl_username(username), client_id, topic_filter)

    def _acl_username(self, username: str | None) -> str | None:
        return username if self.passwords is not None else None
