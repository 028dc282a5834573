"""The subscription tree against a brute-force reference, and filter / topic validation (MQTT 5.0 §4.7, §4.8.2)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mqtt.topics import SubscriptionTree, filter_error, filter_matches, split_shared, topic_name_error

LEVELS = st.sampled_from(["a", "b", "", "$SYS", "$x", "c"])
topics = st.lists(LEVELS, min_size=1, max_size=4).map("/".join).filter(lambda t: t != "")
filters = st.lists(st.sampled_from(["a", "b", "", "+", "$SYS", "$x"]), min_size=1, max_size=4).flatmap(
    lambda levels: st.booleans().map(lambda hash_end: "/".join([*levels, "#"] if hash_end else levels))
)


def test_filter_matches_follows_the_spec_examples() -> None:
    """§4.7.1.2 and §4.7.1.3 examples, and §4.7.2 for topics starting with $."""
    assert filter_matches("sport/tennis/player1/#", "sport/tennis/player1")
    assert filter_matches("sport/tennis/player1/#", "sport/tennis/player1/ranking")
    assert filter_matches("sport/#", "sport")
    assert filter_matches("#", "sport/tennis")
    assert filter_matches("sport/tennis/+", "sport/tennis/player1")
    assert not filter_matches("sport/tennis/+", "sport/tennis/player1/ranking")
    assert not filter_matches("sport/+", "sport")
    assert filter_matches("sport/+", "sport/")
    assert filter_matches("+/+", "/finance")
    assert filter_matches("/+", "/finance")
    assert not filter_matches("+", "/finance")
    assert not filter_matches("#", "$SYS/broker/uptime")
    assert not filter_matches("+/monitor/Clients", "$SYS/monitor/Clients")
    assert filter_matches("$SYS/#", "$SYS/broker/uptime")
    assert filter_matches("$SYS/monitor/+", "$SYS/monitor/Clients")


def test_filter_validation() -> None:
    for good in ("#", "+", "a/+/b", "a/#", "/", "+/+", "$share/g/a/#", "$share/g/#"):
        assert filter_error(good) is None, good
    for bad in ("", "a/#/b", "a#", "a+", "a/b+", "$share/g", "$share//a", "$share/g+/a", "$share/g/"):
        assert filter_error(bad) is not None, bad
    assert topic_name_error("a/+") is not None
    assert topic_name_error("") is not None
    assert topic_name_error("a/b") is None
    assert split_shared("$share/grp/a/b") == ("grp", "a/b")
    assert split_shared("a/b") == (None, "a/b")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(filters, st.sampled_from(["c1", "c2", "c3"])), max_size=12), st.lists(topics, max_size=8))
def test_tree_matches_exactly_what_brute_force_matches(subscriptions, published) -> None:
    tree: SubscriptionTree[tuple[str, str]] = SubscriptionTree()
    for topic_filter, client in subscriptions:
        tree.add(topic_filter, client, (client, topic_filter))
    held = {(client, f) for f, client in subscriptions}
    for topic in published:
        expected = sorted((c, f) for c, f in held if filter_matches(f, topic))
        assert sorted(tree.match(topic).subscribers) == expected
        assert sorted(tree.match(topic).subscribers) == expected  # the cached answer too


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(filters, st.sampled_from(["c1", "c2"])), max_size=10), topics)
def test_removing_every_subscription_leaves_an_empty_tree(subscriptions, topic) -> None:
    tree: SubscriptionTree[str] = SubscriptionTree()
    for topic_filter, client in subscriptions:
        tree.add(topic_filter, client, client)
    tree.match(topic)
    for topic_filter, client in subscriptions:
        tree.remove(topic_filter, client)
    assert tree.count == 0
    assert tree.match(topic).subscribers == []
    assert not tree._root.children  # pruned: no nodes left behind


def test_shared_groups_are_reported_once_per_group_with_all_members() -> None:
    tree: SubscriptionTree[str] = SubscriptionTree()
    tree.add("$share/g1/s/+", "a", "a-opts")
    tree.add("$share/g1/s/+", "b", "b-opts")
    tree.add("$share/g2/s/#", "c", "c-opts")
    tree.add("s/+", "d", "d-opts")
    match = tree.match("s/x")
    assert match.subscribers == ["d-opts"]
    groups = {key: dict(members) for key, members in match.groups}
    assert groups == {("g1", "s/+"): {"a": "a-opts", "b": "b-opts"}, ("g2", "s/#"): {"c": "c-opts"}}
    assert tree.remove("$share/g1/s/+", "a")
    assert not tree.remove("$share/g1/s/+", "a")
    assert {key: dict(m) for key, m in tree.match("s/x").groups}[("g1", "s/+")] == {"b": "b-opts"}


def test_add_reports_whether_the_subscription_is_new() -> None:
    tree: SubscriptionTree[int] = SubscriptionTree()
    assert tree.add("a/b", "c1", 0)
    assert not tree.add("a/b", "c1", 1)
    assert tree.match("a/b").subscribers == [1]
    assert tree.count == 1
