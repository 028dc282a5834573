"""The password file: users and their argon2id hashes, one `username:hash` per line, as mosquitto's.

Imported only when a password file is configured or edited: argon2 is not loaded otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import secrets
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.mqtt.auth import AuthConfigError, is_comment_or_blank, read_lines

# OWASP's minimum for argon2id: 19 MiB per verification lets a few CONNECTs run at once within the
# 512 MB of a Pi Zero 2 W.  Hashes made with other parameters still verify: they are in the hash.
_HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_VERIFIED_CACHE_SIZE = 256


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
        for lineno, line in enumerate(read_lines(path, "password file"), start=1):
            if is_comment_or_blank(line):
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
