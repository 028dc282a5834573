"""Authentication (password file) and authorization (ACL file) for the MQTT broker.

Both files use mosquitto's layout so that operators coming from mosquitto recognise them; the one
difference is that password hashes are argon2 rather than mosquitto's PBKDF2.  Nothing here knows
about asyncio: argon2 verification blocks for tens of milliseconds on a Pi, so the broker should run
`Authorizer.authenticate` in a worker thread.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import os
import secrets
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import argon2
from argon2.exceptions import InvalidHashError, VerificationError


class AuthConfigError(Exception):
    """A password or ACL file cannot be used; the message says where, what is wrong and what to do."""


# OWASP's minimum for argon2id: 19 MiB per verification lets a few CONNECTs run at once within the
# 512 MB of a Pi Zero 2 W.  Hashes made with other parameters still verify: they are in the hash.
_HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_VERIFIED_CACHE_SIZE = 256


def _read_lines(path: Path, what: str) -> list[str]:
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


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


# ---------------------------------------------------------------------------------------------
# Passwords


def _username_problem(username: str) -> str | None:
    if not username.strip():
        return "the username is empty"
    if ":" in username:
        return f"the username {username!r} contains ':', which separates the username from the hash"
    if "\n" in username or "\r" in username:
        return f"the username {username!r} contains a line break"
    if username.lstrip().startswith("#"):
        return f"the username {username!r} starts with '#' and would be read back as a comment"
    return None


def _verify_hash(stored: str, secret: bytes) -> bool:
    try:
        return _HASHER.verify(stored, secret)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_bytes(16))


def _cache_key(username: str, secret: bytes, stored: str) -> bytes:
    digest = hashlib.sha256()
    for part in (username.encode(), secret, stored.encode()):
        # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


class PasswordFile:
    """Users and their argon2 hashes, stored mosquitto-style as one `username:hash` per line.

    `#` comments and blank lines are accepted by `load` but not written back by `save`.
    """

    def __init__(self) -> None:
        self._hashes: dict[str, str] = {}
        # Keys of recent successful verifications, so that a reconnect storm costs one sha256 per
        # CONNECT instead of one argon2 hash.  The stored hash is part of the key, so a password
        # change makes old entries unreachable.
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        # The broker may verify from several worker threads at once.
        self._verified_lock = threading.Lock()

    @classmethod
    def empty(cls) -> PasswordFile:
        return cls()

    @classmethod
    def load(cls, path: Path) -> PasswordFile:
        passwords = cls()
        defined_on: dict[str, int] = {}
        for lineno, line in enumerate(_read_lines(path, "password file"), start=1):
            if _is_comment_or_blank(line):
                continue
            where = f"{path}:{lineno}"
            username, colon, stored = line.partition(":")
            stored = stored.strip()
            if not colon:
                raise AuthConfigError(f"{where}: expected 'username:hash' but found no ':'; fix or remove the line")
            if not username.strip():
                raise AuthConfigError(f"{where}: the username is empty; put the username before the ':'")
            if username in defined_on:
                raise AuthConfigError(
                    f"{where}: user {username!r} is already defined on line {defined_on[username]}; "
                    "remove one of the two lines"
                )
            try:
                argon2.extract_parameters(stored)
            except InvalidHashError:
                raise AuthConfigError(
                    f"{where}: the hash of user {username!r} is not an argon2 hash (mosquitto_passwd "
                    "hashes are not supported); set the user's password again"
                ) from None
            passwords._hashes[username] = stored
            defined_on[username] = lineno
        return passwords

    def set_password(self, username: str, password: str) -> None:
        """Add the user or replace their password; raises ValueError for a username the file cannot hold."""
        problem = _username_problem(username)
        if problem is not None:
            raise ValueError(f"{problem}; choose another username")
        self._hashes[username] = _HASHER.hash(password)

    def delete_user(self, username: str) -> bool:
        """Remove the user; False if there was no such user."""
        return self._hashes.pop(username, None) is not None

    def usernames(self) -> list[str]:
        return sorted(self._hashes)

    def verify(self, username: str, password: bytes | str) -> bool:
        """Whether `password` is the user's password; False for an unknown user.  Blocks for one
        argon2 verification unless the same user, password and hash succeeded recently."""
        secret = password.encode() if isinstance(password, str) else password
        stored = self._hashes.get(username)
        if stored is None:
            # Spend the same argon2 work as for a real user, so that response times do not tell an
            # attacker which usernames exist.
            _verify_hash(_dummy_hash(), secret)
            return False
        key = _cache_key(username, secret, stored)
        with self._verified_lock:
            if key in self._verified:
                self._verified.move_to_end(key)
                return True
        if not _verify_hash(stored, secret):
            return False
        with self._verified_lock:
            self._verified[key] = None
            if len(self._verified) > _VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return True

    def save(self, path: Path) -> None:
        """Write the file with mode 0600, atomically: after a crash or power cut, readers find the
        old file or the new one, never a mix."""
        text = "".join(f"{username}:{stored}\n" for username, stored in sorted(self._hashes.items()))
        # mkstemp creates the file with mode 0600, so the hashes are never readable by others, not even briefly.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # The rename is only durable once the directory itself reaches the disk.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ---------------------------------------------------------------------------------------------
# Topic filters (MQTT 3.1.1 section 4.7).  Filters are assumed valid; topics non-empty.


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether the concrete `topic` matches `topic_filter`."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels, topic_levels = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i == len(topic_levels) or level not in ("+", topic_levels[i]):
            return False
    return len(filter_levels) == len(topic_levels)


def filter_covers(outer: str, inner: str) -> bool:
    """Whether every topic that filter `inner` matches is also matched by filter `outer`."""
    if inner.startswith("$") and outer[:1] in ("+", "#"):
        return False
    outer_levels, inner_levels = outer.split("/"), inner.split("/")
    for i, level in enumerate(outer_levels):
        if level == "#":
            return True
        if i == len(inner_levels):
            return False
        if inner_levels[i] == "#":
            # `inner` also matches its parent level, which `outer` (not '#' here) can only match
            # as '+/#' at the top, where there is no parent level to match.
            return i == 0 and level == "+" and outer_levels[1:] == ["#"]
        if level not in ("+", inner_levels[i]):
            return False
    return len(outer_levels) == len(inner_levels)


def filters_overlap(first: str, second: str) -> bool:
    """Whether some topic matches both filters."""
    # A leading wildcard never matches a `$` topic.
    if (first[:1] in ("+", "#") and second.startswith("$")) or (second[:1] in ("+", "#") and first.startswith("$")):
        return False
    first_levels, second_levels = first.split("/"), second.split("/")
    for a, b in zip(first_levels, second_levels, strict=False):
        if "#" in (a, b):
            return True
        if a != b and "+" not in (a, b):
            return False
    shorter, longer = sorted((first_levels, second_levels), key=len)
    # Past the common length, only a lone '#' (matching its parent) can still match the shorter topic.
    return longer[len(shorter) :] in ([], ["#"])


def _filter_problem(topic_filter: str) -> str | None:
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return f"in {topic_filter!r}, '#' must be a whole level and the last one (e.g. 'sensors/#')"
        if "+" in level and level != "+":
            return f"in {topic_filter!r}, '+' must be a whole level (e.g. 'sensors/+/temp')"
    return None


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
    problem = _filter_problem(topic_filter)
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
        for lineno, line in enumerate(_read_lines(path, "ACL file"), start=1):
            if _is_comment_or_blank(line):
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
