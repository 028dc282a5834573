"""Topic names, topic filters and the subscription tree (MQTT 5.0 §4.7, §4.8.2; 3.1.1 §4.7).

Pure data structures: no I/O. The tree caches the result of matching a topic, because sensors publish to the same
few topics over and over while subscriptions change rarely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

SHARE_PREFIX = "$share/"
MAX_TOPIC_BYTES = 65_535
_MATCH_CACHE_SIZE = 4096
# Longer topics are matched but not cached: the cache is bounded in entries, so its keys must be small too.
MAX_CACHED_TOPIC = 256
# Like mosquitto's limit on topic hierarchy depth: matching recurses once per level.
MAX_LEVELS = 128


def topic_name_error(topic: str) -> str | None:
    """Why `topic` cannot be published to, or None when it can (§4.7.3)."""
    if not topic:
        return "a topic name must not be empty"
    if "+" in topic or "#" in topic:
        return "a topic name must not contain the wildcards '+' or '#'"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return "a topic name is longer than 65,535 bytes"
    if topic.count("/") >= MAX_LEVELS:
        return f"a topic name has more than {MAX_LEVELS} levels"
    return None


def filter_error(topic_filter: str) -> str | None:
    """Why `topic_filter` is not a valid subscription, or None when it is (§4.7.1, §4.8.2)."""
    if not topic_filter:
        return "a topic filter must not be empty"
    if topic_filter.startswith(SHARE_PREFIX):
        group, sep, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
        if not group or "+" in group or "#" in group:
            return "a shared subscription needs a group name without wildcards: $share/<group>/<filter>"
        if not sep or not rest:
            return "a shared subscription needs a filter after the group: $share/<group>/<filter>"
        topic_filter = rest
    levels = topic_filter.split("/")
    if len(levels) > MAX_LEVELS:
        return f"a topic filter has more than {MAX_LEVELS} levels"
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """`$share/group/filter` -> (group, filter); any other filter -> (None, filter)."""
    if topic_filter.startswith(SHARE_PREFIX):
        group, _, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
        return group, rest
    return None, topic_filter


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether a (non-shared) filter matches a topic name, `$` topics excluded from leading wildcards (§4.7.2)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i >= len(topic_levels) or (level != "+" and level != topic_levels[i]):
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


@dataclass(slots=True)
class _Node(Generic[T]):
    children: dict[str, _Node[T]] = field(default_factory=dict)
    # client id -> what the subscriber asked for (options), for filters that end at this node
    subscribers: dict[str, T] = field(default_factory=dict)
    # share group -> client id -> options
    groups: dict[str, dict[str, T]] = field(default_factory=dict)


@dataclass(slots=True)
class Match(Generic[T]):
    """What one topic matches: plain subscribers (possibly one client several times, through overlapping
    filters), and shared groups, each identified by (group, filter), from which the broker picks one member."""

    subscribers: list[T]
    groups: list[tuple[tuple[str, str], dict[str, T]]]


class SubscriptionTree(Generic[T]):
    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._cache: dict[str, Match[T]] = {}
        self.count = 0

    def add(self, topic_filter: str, client_id: str, value: T) -> bool:
        """Subscribe; returns True when this client had no subscription to exactly this filter before."""
        group, plain = split_shared(topic_filter)
        node = self._root
        for level in plain.split("/"):
            node = node.children.setdefault(level, _Node())
        members = node.subscribers if group is None else node.groups.setdefault(group, {})
        new = client_id not in members
        members[client_id] = value
        self.count += new
        self._cache.clear()
        return new

    def remove(self, topic_filter: str, client_id: str) -> bool:
        """Unsubscribe; returns True when there was such a subscription."""
        group, plain = split_shared(topic_filter)
        path = [self._root]
        levels = plain.split("/")
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        node = path[-1]
        members = node.subscribers if group is None else node.groups.get(group, {})
        if members.pop(client_id, None) is None:
            return False
        if group is not None and not members:
            del node.groups[group]
        # Prune empty branches so that a churn of one-off topics does not leak nodes.
        for level, parent, child in zip(reversed(levels), reversed(path[:-1]), reversed(path[1:]), strict=True):
            if child.children or child.subscribers or child.groups:
                break
            del parent.children[level]
        self.count -= 1
        self._cache.clear()
        return True

    def match(self, topic: str) -> Match[T]:
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        result: Match[T] = Match([], [])
        self._collect(self._root, topic.split("/"), 0, topic.startswith("$"), [], result)
        if len(self._cache) >= _MATCH_CACHE_SIZE:
            self._cache.clear()
        if len(topic) <= MAX_CACHED_TOPIC:
            self._cache[topic] = result
        return result

    def _collect(
        self, node: _Node[T], levels: list[str], depth: int, dollar: bool, path: list[str], out: Match[T]
    ) -> None:
        wildcards_allowed = not (dollar and depth == 0)
        if wildcards_allowed:
            hash_node = node.children.get("#")
            if hash_node is not None:
                self._emit(hash_node, [*path, "#"], out)
        if depth == len(levels):
            self._emit(node, path, out)
            return
        level = levels[depth]
        exact = node.children.get(level)
        if exact is not None:
            self._collect(exact, levels, depth + 1, dollar, [*path, level], out)
        if wildcards_allowed:
            plus = node.children.get("+")
            if plus is not None:
                self._collect(plus, levels, depth + 1, dollar, [*path, "+"], out)

    @staticmethod
    def _emit(node: _Node[T], path: list[str], out: Match[T]) -> None:
        if node.subscribers:
            out.subscribers.extend(node.subscribers.values())
        if node.groups:
            plain = "/".join(path)
            out.groups.extend(((group, plain), members) for group, members in node.groups.items())
