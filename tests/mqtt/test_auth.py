import itertools
import os
import stat
from collections.abc import Callable
from pathlib import Path

import argon2
import pytest

from gateway.mqtt import passwords as passwords_module
from gateway.mqtt.auth import AclFile, AuthConfigError, Authorizer
from gateway.mqtt.passwords import PasswordFile
from gateway.mqtt.topics import filter_covers, filter_matches, filters_overlap

# A valid argon2 hash of "pw", cheap to make, for files whose hashes are not the point of the test.
# The fixed salt keeps parametrized test ids identical across pytest-xdist workers.
GOOD_HASH = argon2.low_level.hash_secret(
    b"pw", b"fixed salt bytes", time_cost=1, memory_cost=8, parallelism=1, hash_len=16, type=argon2.Type.ID
).decode()

# ---------------------------------------------------------------------------------------------
# Passwords


@pytest.fixture(scope="module")
def alice_and_bob() -> PasswordFile:
    # Real argon2 hashing is slow on purpose; hash once for the whole module.
    passwords = PasswordFile.empty()
    passwords.set_password("alice", "wonderland")
    passwords.set_password("bob", "builder")
    return passwords


def test_password_round_trip(tmp_path: Path, alice_and_bob: PasswordFile) -> None:
    path = tmp_path / "passwd"
    alice_and_bob.save(path)

    loaded = PasswordFile.load(path)

    assert loaded.usernames() == ["alice", "bob"]
    assert loaded.verify("alice", "wonderland")
    assert loaded.verify("bob", b"builder")


def test_saved_hashes_are_argon2id_with_pi_parameters(tmp_path: Path, alice_and_bob: PasswordFile) -> None:
    path = tmp_path / "passwd"
    alice_and_bob.save(path)

    stored = path.read_text().splitlines()[0].partition(":")[2]
    params = argon2.extract_parameters(stored)

    assert params.type is argon2.Type.ID
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19456, 2, 1)


def test_wrong_password_and_unknown_user_are_rejected(alice_and_bob: PasswordFile) -> None:
    assert not alice_and_bob.verify("alice", "builder")
    assert not alice_and_bob.verify("alice", b"")
    assert not alice_and_bob.verify("carol", "wonderland")


def test_hash_made_with_other_argon2_parameters_verifies(tmp_path: Path) -> None:
    other = argon2.PasswordHasher(time_cost=1, memory_cost=16, parallelism=2, type=argon2.Type.I)
    path = tmp_path / "passwd"
    path.write_text(f"legacy:{other.hash('old secret')}\n")

    passwords = PasswordFile.load(path)

    assert passwords.verify("legacy", "old secret")
    assert not passwords.verify("legacy", "new secret")


def test_comments_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text(f"# users\n\n   \n  # indented comment\nalice:{argon2.PasswordHasher().hash('pw')}\n")

    assert PasswordFile.load(path).usernames() == ["alice"]


def test_delete_user(tmp_path: Path) -> None:
    passwords = PasswordFile.empty()
    passwords.set_password("alice", "pw")
    passwords.set_password("bob", "pw")

    assert passwords.delete_user("alice")
    assert not passwords.delete_user("alice")
    assert not passwords.verify("alice", "pw")

    path = tmp_path / "passwd"
    passwords.save(path)
    assert PasswordFile.load(path).usernames() == ["bob"]


def test_save_replaces_file_with_mode_0600_and_leaves_no_temp_file(tmp_path: Path, alice_and_bob: PasswordFile) -> None:
    path = tmp_path / "passwd"
    path.write_text("stale:content\n")
    path.chmod(0o644)

    alice_and_bob.save(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "stale" not in path.read_text()
    assert os.listdir(tmp_path) == ["passwd"]


def test_save_failure_keeps_old_file_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "passwd"
    path.write_text("old:file\n")

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        PasswordFile.empty().save(path)

    assert path.read_text() == "old:file\n"
    assert os.listdir(tmp_path) == ["passwd"]


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("alice", "no ':'"),
        (f":{GOOD_HASH}", "username is empty"),
        ("  :" + GOOD_HASH, "username is empty"),
        ("alice:not-a-hash", "not an argon2 hash"),
        ("alice:$6$salt$sha512crypt", "not an argon2 hash"),
        (f"bob:{GOOD_HASH}", "already defined on line 2"),
    ],
)
def test_bad_password_line_reports_path_and_line_number(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = tmp_path / "passwd"
    path.write_text(f"# header\nbob:{GOOD_HASH}\n\n{bad_line}\n")

    with pytest.raises(AuthConfigError) as excinfo:
        PasswordFile.load(path)

    assert str(excinfo.value).startswith(f"{path}:4: ")
    assert reason in str(excinfo.value)


def test_missing_password_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(AuthConfigError, match="not found"):
        PasswordFile.load(path)


@pytest.mark.parametrize("username", ["", "   ", "a:b", "#admin", "two\nlines"])
def test_set_password_rejects_usernames_the_file_cannot_hold(username: str) -> None:
    passwords = PasswordFile.empty()
    with pytest.raises(ValueError, match="choose another username"):
        passwords.set_password(username, "pw")
    assert passwords.usernames() == []


def test_odd_but_legal_usernames_round_trip(tmp_path: Path) -> None:
    passwords = PasswordFile.empty()
    passwords.set_password("  spaced out\u2028", "pw")
    path = tmp_path / "passwd"
    passwords.save(path)

    assert PasswordFile.load(path).verify("  spaced out\u2028", "pw")


class CountingVerifier:
    def __init__(self, verify: Callable[[str, bytes], bool]) -> None:
        self.verify = verify
        self.calls = 0

    def __call__(self, stored: str, secret: bytes) -> bool:
        self.calls += 1
        return self.verify(stored, secret)


def test_repeated_successful_verification_skips_argon2(
    tmp_path: Path, alice_and_bob: PasswordFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice_and_bob.save(tmp_path / "passwd")
    passwords = PasswordFile.load(tmp_path / "passwd")
    counter = CountingVerifier(passwords_module._verify_hash)
    monkeypatch.setattr(passwords_module, "_verify_hash", counter)

    assert passwords.verify("alice", "wonderland")
    assert passwords.verify("alice", "wonderland")
    assert counter.calls == 1

    # A cached success must not let a different password or a different user through.
    assert not passwords.verify("alice", "wonderland!")
    assert not passwords.verify("bob", "wonderland")
    assert counter.calls == 3


def test_unknown_user_costs_an_argon2_verification_too(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CountingVerifier(passwords_module._verify_hash)
    monkeypatch.setattr(passwords_module, "_verify_hash", counter)

    assert not PasswordFile.empty().verify("carol", "pw")
    assert counter.calls == 1


def test_password_change_invalidates_cached_success() -> None:
    passwords = PasswordFile.empty()
    passwords.set_password("alice", "old")
    assert passwords.verify("alice", "old")

    passwords.set_password("alice", "new")

    assert not passwords.verify("alice", "old")
    assert passwords.verify("alice", "new")


def test_verification_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "passwd"
    path.write_text("".join(f"user{i}:{GOOD_HASH}\n" for i in range(300)))
    passwords = PasswordFile.load(path)
    counter = CountingVerifier(lambda stored, secret: True)
    monkeypatch.setattr(passwords_module, "_verify_hash", counter)

    for i in range(256):
        assert passwords.verify(f"user{i}", "pw")
    assert passwords.verify("user0", "pw")
    assert counter.calls == 256
    for i in range(256, 300):
        assert passwords.verify(f"user{i}", "pw")
    assert counter.calls == 300

    # Least recently used first: user0 was used again, so user1 went instead and costs argon2 again.
    assert passwords.verify("user0", "pw")
    assert counter.calls == 300
    assert passwords.verify("user1", "pw")
    assert counter.calls == 301


# ---------------------------------------------------------------------------------------------
# Topic filters


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("sport", "sport/tennis", False),
        ("#", "$SYS/broker/uptime", False),
        ("+/broker/uptime", "$SYS/broker/uptime", False),
        ("$SYS/#", "$SYS/broker/uptime", True),
        ("$SYS/broker/+", "$SYS/broker/uptime", True),
    ],
)
def test_filter_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert filter_matches(topic_filter, topic) is expected


def _small_filters() -> list[str]:
    filters = []
    for depth in (1, 2, 3):
        for levels in itertools.product(["a", "$s", "+"], repeat=depth):
            filters.append("/".join(levels))
            filters.append("/".join((*levels, "#")))
    return ["#", *filters]


def _small_topics() -> list[str]:
    # 'b' stands for any literal the filters do not name; depth 4 for anything deeper than they go.
    return ["/".join(t) for depth in (1, 2, 3, 4) for t in itertools.product(["a", "b", "$s"], repeat=depth)]


def test_cover_and_overlap_agree_with_brute_force() -> None:
    topics = _small_topics()
    filters = _small_filters()
    matched = {f: {t for t in topics if filter_matches(f, t)} for f in filters}

    for outer, inner in itertools.product(filters, repeat=2):
        assert filter_covers(outer, inner) is (matched[inner] <= matched[outer]), (outer, inner)
        assert filters_overlap(outer, inner) is bool(matched[inner] & matched[outer]), (outer, inner)


# ---------------------------------------------------------------------------------------------
# ACL


def load_acl(tmp_path: Path, text: str) -> AclFile:
    path = tmp_path / "acl"
    path.write_text(text)
    return AclFile.load(path)


def test_anonymous_and_user_sections(tmp_path: Path) -> None:
    acl = load_acl(
        tmp_path,
        """
# anonymous clients
topic read public/#

user alice
topic alice/#
topic write shared/inbox

user bob
topic read bob/#
""",
    )

    assert acl.may_read(None, "c1", "public/news")
    assert not acl.may_write(None, "c1", "public/news")
    assert not acl.may_read(None, "c1", "alice/diary")

    # A user does not inherit the anonymous section, nor another user's.
    assert not acl.may_read("alice", "c2", "public/news")
    assert acl.may_read("alice", "c2", "alice/diary")
    assert acl.may_write("alice", "c2", "alice/diary")
    assert acl.may_write("alice", "c2", "shared/inbox")
    assert not acl.may_read("alice", "c2", "shared/inbox")
    assert not acl.may_read("alice", "c2", "bob/x")
    assert acl.may_read("bob", "c3", "bob/x")
    assert not acl.may_write("bob", "c3", "bob/x")
    assert not acl.may_read("carol", "c4", "public/news")


def test_patterns_substitute_client_id_and_username(tmp_path: Path) -> None:
    acl = load_acl(
        tmp_path,
        """
user alice
topic read nothing/here
pattern write devices/%c/state
pattern read users/%u/#
""",
    )

    assert acl.may_write(None, "pump1", "devices/pump1/state")
    assert not acl.may_write(None, "pump1", "devices/pump2/state")
    assert acl.may_write("alice", "pump1", "devices/pump1/state")
    assert acl.may_read("alice", "pump1", "users/alice/settings")
    assert acl.may_read("bob", "pump1", "users/bob")
    assert not acl.may_read("bob", "pump1", "users/alice/settings")
    # %u never matches an anonymous client, not even one whose client id looks like a username.
    assert not acl.may_read(None, "alice", "users/alice/settings")


@pytest.mark.parametrize("client_id", ["+", "#", "a/b", "x+y", ""])
def test_client_id_with_wildcards_or_slashes_gains_nothing_from_patterns(tmp_path: Path, client_id: str) -> None:
    acl = load_acl(tmp_path, "pattern readwrite devices/%c/#\n")

    assert not acl.may_read(None, client_id, "devices/other/state")
    assert not acl.may_read(None, client_id, f"devices/{client_id}/state")
    assert not acl.may_write(None, client_id, "devices/a/b/state")
    assert not acl.may_subscribe(None, client_id, "devices/+/#")
    assert not acl.may_subscribe(None, client_id, "devices/#")
    assert acl.may_read(None, "sane", "devices/sane/state")


@pytest.mark.parametrize("username", ["+", "#", "a/b"])
def test_username_with_wildcards_or_slashes_gains_nothing_from_patterns(tmp_path: Path, username: str) -> None:
    acl = load_acl(tmp_path, "pattern readwrite users/%u/#\n")

    assert not acl.may_read(username, "c1", "users/alice/x")
    assert not acl.may_subscribe(username, "c1", "users/#")


def test_deny_pattern_that_cannot_be_substituted_denies_everything(tmp_path: Path) -> None:
    acl = load_acl(tmp_path, "topic read public/#\npattern deny public/%c/secret\n")

    assert acl.may_read(None, "sane", "public/news")
    assert not acl.may_read(None, "sane", "public/sane/secret")
    assert not acl.may_read(None, "a/b", "public/news")
    assert not acl.may_read(None, "+", "public/news")


def test_username_deny_pattern_does_not_apply_to_anonymous_clients(tmp_path: Path) -> None:
    acl = load_acl(tmp_path, "topic read public/#\npattern deny public/%u/private\n")

    assert acl.may_read(None, "c1", "public/news")
    assert acl.may_subscribe(None, "c1", "public/#")


def test_deny_wins_over_grants_wherever_it_is(tmp_path: Path) -> None:
    acl = load_acl(
        tmp_path,
        """
topic readwrite sensors/#
topic deny sensors/secret/#
user alice
topic deny alarms/silence
topic alarms/#
pattern deny sensors/%c/private
""",
    )

    assert acl.may_read(None, "c1", "sensors/kitchen/temp")
    assert not acl.may_read(None, "c1", "sensors/secret/code")
    assert not acl.may_write(None, "c1", "sensors/secret")
    assert not acl.may_read(None, "c1", "sensors/c1/private")
    assert acl.may_read(None, "c2", "sensors/c1/private")
    assert acl.may_write("alice", "c1", "alarms/fire")
    assert not acl.may_write("alice", "c1", "alarms/silence")
    # Denies in the anonymous section do not apply to users, and vice versa.
    assert not acl.may_read("alice", "c1", "sensors/kitchen/temp")
    assert acl.may_write("alice", "c2", "alarms/fire")


def test_dollar_topics_need_an_explicit_dollar_grant(tmp_path: Path) -> None:
    acl = load_acl(tmp_path, "topic read #\nuser admin\ntopic read #\ntopic read $SYS/#\n")

    assert acl.may_read(None, "c1", "anything/at/all")
    assert not acl.may_read(None, "c1", "$SYS/broker/uptime")
    assert not acl.may_subscribe(None, "c1", "$SYS/#")
    assert not acl.may_subscribe(None, "c1", "$SYS/broker/uptime")
    assert acl.may_read("admin", "c2", "$SYS/broker/uptime")
    assert acl.may_subscribe("admin", "c2", "$SYS/#")


def test_access_words_default_to_readwrite(tmp_path: Path) -> None:
    acl = load_acl(tmp_path, "topic both\ntopic read r\ntopic write w\ntopic readwrite rw\ntopic read with space\n")

    assert acl.may_read(None, "c", "both")
    assert acl.may_write(None, "c", "both")
    assert acl.may_read(None, "c", "r")
    assert not acl.may_write(None, "c", "r")
    assert acl.may_write(None, "c", "w")
    assert not acl.may_read(None, "c", "w")
    assert acl.may_read(None, "c", "rw")
    assert acl.may_write(None, "c", "rw")
    assert acl.may_read(None, "c", "with space")


@pytest.mark.parametrize(
    ("subscription", "allowed"),
    [
        ("sensors/#", True),
        ("sensors", True),
        ("sensors/+/temp", True),
        ("sensors/kitchen/temp", True),
        ("sensors/public/#", True),
        ("alerts/+/temp", True),
        ("alerts/kitchen/temp", True),
        ("alerts/#", False),
        ("alerts/+/+", False),
        ("alerts/kitchen/+", False),
        ("#", False),
        ("+/+/temp", False),
    ],
)
def test_subscription_must_be_covered_by_a_read_grant(tmp_path: Path, subscription: str, allowed: bool) -> None:
    acl = load_acl(tmp_path, "topic read sensors/#\ntopic read alerts/+/temp\ntopic write commands/#\n")

    assert acl.may_subscribe(None, "c1", subscription) is allowed


@pytest.mark.parametrize(
    ("subscription", "allowed"),
    [
        ("sensors/#", False),
        ("sensors/+/temp", False),
        ("sensors/+", False),
        ("sensors/secret", False),
        ("sensors/kitchen/temp", True),
        ("sensors/public/#", True),
    ],
)
def test_subscription_is_refused_if_a_deny_could_match_any_of_its_topics(
    tmp_path: Path, subscription: str, allowed: bool
) -> None:
    acl = load_acl(tmp_path, "topic read sensors/#\ntopic deny sensors/secret/#\n")

    assert acl.may_subscribe(None, "c1", subscription) is allowed


def test_write_grant_does_not_allow_subscribing(tmp_path: Path) -> None:
    acl = load_acl(tmp_path, "topic write commands/#\n")

    assert not acl.may_subscribe(None, "c1", "commands/#")


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("topics read a", "unknown keyword 'topics'"),
        ("user", "'user' needs a username"),
        ("topic", "needs a topic filter"),
        ("topic read", "needs a topic filter after it"),
        ("topic a b", "'a' is not read, write, readwrite or deny"),
        ("topic sensors/# read", "put the access word first"),
        ("topic read a/#/b", "'#' must be a whole level and the last one"),
        ("topic read sensors#", "'#' must be a whole level"),
        ("pattern read sensors+/x", "'+' must be a whole level"),
        ("pattern read devices/x%c/#", "'%c' and '%u' must be a whole level"),
        ("topic read a/b #note", "'#' must be a whole level"),
    ],
)
def test_bad_acl_line_reports_path_and_line_number(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = tmp_path / "acl"
    path.write_text(f"# header\ntopic read ok/#\n\n{bad_line}\n")

    with pytest.raises(AuthConfigError) as excinfo:
        AclFile.load(path)

    assert str(excinfo.value).startswith(f"{path}:4: ")
    assert reason in str(excinfo.value)


def test_missing_acl_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="not found"):
        AclFile.load(tmp_path / "acl")


# ---------------------------------------------------------------------------------------------
# Authorizer


def test_authenticate_without_password_file_follows_allow_anonymous() -> None:
    assert Authorizer(allow_anonymous=True).authenticate(None, None)
    assert Authorizer(allow_anonymous=True).authenticate("anyone", b"anything")
    assert not Authorizer(allow_anonymous=False).authenticate(None, None)
    assert not Authorizer(allow_anonymous=False).authenticate("anyone", b"anything")


@pytest.mark.parametrize("allow_anonymous", [True, False])
def test_authenticate_with_password_file(alice_and_bob: PasswordFile, allow_anonymous: bool) -> None:
    authorizer = Authorizer(allow_anonymous=allow_anonymous, passwords=alice_and_bob)

    assert authorizer.authenticate("alice", b"wonderland")
    assert not authorizer.authenticate("alice", b"builder")
    assert not authorizer.authenticate("alice", None)
    assert not authorizer.authenticate("carol", b"wonderland")
    assert authorizer.authenticate(None, None) is allow_anonymous


def test_no_acl_file_allows_everything() -> None:
    authorizer = Authorizer(allow_anonymous=True)

    assert authorizer.may_write(None, "c1", "$SYS/anything")
    assert authorizer.may_read("alice", "c1", "a/b")
    assert authorizer.may_subscribe(None, "c1", "#")


def test_acl_applies_to_verified_usernames(tmp_path: Path, alice_and_bob: PasswordFile) -> None:
    acl = load_acl(tmp_path, "topic read public/#\nuser alice\ntopic alice/#\n")
    authorizer = Authorizer(allow_anonymous=True, passwords=alice_and_bob, acl=acl)

    assert authorizer.may_write("alice", "c1", "alice/x")
    assert authorizer.may_subscribe("alice", "c1", "alice/#")
    assert not authorizer.may_read("alice", "c1", "public/news")
    assert authorizer.may_read(None, "c2", "public/news")
    assert not authorizer.may_write(None, "c2", "alice/x")


def test_unverified_username_gets_only_anonymous_acl(tmp_path: Path) -> None:
    acl = load_acl(tmp_path, "topic read public/#\nuser alice\ntopic alice/#\n")
    authorizer = Authorizer(allow_anonymous=True, acl=acl)

    assert authorizer.authenticate("alice", None)
    assert not authorizer.may_write("alice", "c1", "alice/x")
    assert authorizer.may_read("alice", "c1", "public/news")
