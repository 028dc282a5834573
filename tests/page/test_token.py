"""With `[http] token_for_reads = true` the page asks for the token once, keeps it in the browser's storage, sends it
with every request (the event stream of the live chart as ?token=, since EventSource cannot set headers), and asks
again when the token is refused."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from playwright.sync_api import expect

from tests.conftest import Client, Gateway
from tests.page.conftest import Visit

CONFIG = '[http]\ntoken = "s3cret"\ntoken_for_reads = true\n'


def test_the_token_is_asked_once_kept_and_asked_again_when_refused(
    gateway_factory: Callable[..., Gateway], clients: list[Client], visit: Callable[..., Visit]
) -> None:
    gateway = gateway_factory(CONFIG)
    sensor = Client(gateway.mqtt_port, "shed")
    clients.append(sensor)
    sensor.publish("db/append/SHED", json.dumps(["shed.temp", time.time_ns(), 12.5]), qos=1)
    v = visit(gateway.http_url)
    v.allowed_errors.append(re.compile(r"status of 401"))  # the refused requests, logged by Chromium
    page = v.open()

    dialog = page.get_by_role("dialog", name="API token")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_text("That token was refused.")).to_be_hidden()
    v.screenshot("token-dialog")
    dialog.get_by_label("Token").fill("wrong")
    dialog.get_by_role("button", name="Use this token").click()
    expect(dialog.get_by_text("That token was refused.")).to_be_visible()
    dialog.get_by_label("Token").fill("s3cret")
    dialog.get_by_role("button", name="Use this token").click()
    expect(dialog).to_be_hidden()
    expect(page.locator('.tile[data-key="SHED/shed.temp"] .tile-value')).to_have_text("12.5")
    assert page.evaluate("localStorage.getItem('gateway.token')") == "s3cret"

    page.goto(f"{gateway.http_url}/#/live?s=SHED/shed.temp")  # a new load: the kept token, no question
    expect(page.locator(".live-state")).to_have_text("Live")
    expect(dialog).to_be_hidden()
    sensor.publish("db/append/SHED", json.dumps(["shed.temp", time.time_ns(), 13.25]), qos=1)
    expect(page.locator(".chart-value")).to_have_text("13.25")
    streams = [url for url in v.requests if "/db/watch/" in url]
    assert streams and all("token=s3cret" in url for url in streams)

    page.evaluate("localStorage.setItem('gateway.token', 'changed')")  # the token was changed on the gateway
    page.reload()
    expect(dialog.get_by_text("That token was refused.")).to_be_visible()
