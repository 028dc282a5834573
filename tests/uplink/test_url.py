"""The uplink's URL: mqtt://[user[:password]@]host[:port] and mqtts://..."""

import pytest

from gateway.uplink.url import UplinkUrl, UrlError, parse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker.example", UplinkUrl(False, "broker.example", 1883)),
        ("mqtts://broker.example", UplinkUrl(True, "broker.example", 8883)),
        ("mqtt://127.0.0.1:1884/", UplinkUrl(False, "127.0.0.1", 1884)),
        ("mqtts://site:s%40cret@hub.example:8884", UplinkUrl(True, "hub.example", 8884, "site", "s@cret")),
        ("mqtt://user@[::1]:1883", UplinkUrl(False, "::1", 1883, "user", None)),
        (" mqtt://h ", UplinkUrl(False, "h", 1883)),
    ],
)
def test_urls_that_name_a_broker(url: str, expected: UplinkUrl) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://broker", "scheme must be mqtt or mqtts"),
        ("broker:1883", "scheme must be mqtt or mqtts"),
        ("mqtt://", "names no host"),
        ("mqtt://broker:99999", "not a URL"),
        ("mqtt://broker:port", "not a URL"),
        ("mqtt://broker/topic", "nothing may follow"),
        ("mqtt://broker?x=1", "nothing may follow"),
    ],
)
def test_unusable_urls_say_why_and_show_the_form(url: str, reason: str) -> None:
    with pytest.raises(UrlError, match=reason) as caught:
        parse_url(url)
    assert "mqtt://[user[:password]@]host[:port]" in str(caught.value)


def test_the_printed_url_never_shows_the_password() -> None:
    url = parse_url("mqtts://site:secret@hub.example")
    assert str(url) == "mqtts://site@hub.example:8883"
    assert "secret" not in str(url)
