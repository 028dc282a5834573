"""The web page in a real browser: Debian's Chromium (/usr/bin/chromium, which `make test` installs), driven by
Playwright for Python, against a real gateway.

`browser` is one Chromium per test module. `garden` is one gateway per test module with
what a small garden sends: three hours of history, a connected MQTT sensor with a battery series, an MQTT-SN probe
asleep and one awake, a sensor gone, payloads refused over MQTT and MQTT-SN. `visit` opens a fresh browser context
(no cookies, no storage) and checks, after the test, that no view logged a console error and that no request left
the gateway's origin (any such request is also aborted, so a test never reaches the network).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    ViewportSize,
    sync_playwright,
)

from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode
from tests.conftest import REPO, Client, Gateway
from tests.page import sensors
from tests.system.test_mqttsn import SnClient

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "page"
# A fresh profile comes with every launch (Playwright makes a temporary user data dir). These flags keep Chromium
# off the network: no component updates, no sync, no background requests, no QUIC probing.
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
]
DESKTOP: ViewportSize = {"width": 1366, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
Scheme = Literal["light", "dark"]


# Per module, not per session: Playwright's sync API keeps an asyncio loop running on this thread while it is started,
# and the other tests that an xdist worker runs after these (asyncio.run, loop.run_until_complete) could not run
# theirs. pytest ends a module's fixtures before it runs a test of another module.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: `make test` installs Debian's chromium (TEST_DEBS)"
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Garden:
    gateway: Gateway
    history_readings: int
    mqtt: list[Client] = field(default_factory=list)
    mqttsn: list[SnClient] = field(default_factory=list)  # the sleeping probe, the awake one
    awake_topic_id: int = 0  # db/append/SENSORS, as the awake probe registered it
    message_id: int = 100

    @property
    def origin(self) -> str:
        return self.gateway.http_url

    def publish(self, table: str, name: str, value: float, client: int = 0) -> None:
        """One reading over MQTT at QoS 1 (stored when acknowledged), timed now."""
        self.mqtt[client].publish(f"db/append/{table}", json.dumps([name, time.time_ns(), value]), qos=1)

    def publish_sn(self, name: str, value: float) -> None:
        """One reading to SENSORS from the awake MQTT-SN probe at QoS 1, timed now."""
        sn, topic_id = self.mqttsn[1], self.awake_topic_id
        self.message_id += 1
        sn.send(codec.Publish(topic_id, self.message_id, json.dumps([name, time.time_ns(), value]).encode(), qos=1))
        assert sn.receive() == codec.PubAck(topic_id, self.message_id, ReturnCode.ACCEPTED)


def _awake_probe(port: int) -> tuple[SnClient, int]:
    """An MQTT-SN sensor that stays connected: one reading, then a refused payload (a string for a number)."""
    sn = SnClient(port)
    sn.send(codec.Connect("well-probe", 600))
    assert sn.receive() == codec.ConnAck(ReturnCode.ACCEPTED)
    sn.send(codec.Register(0, 1, "db/append/SENSORS"))
    regack = sn.receive()
    assert isinstance(regack, codec.RegAck)
    sn.send(codec.Publish(regack.topic_id, 2, json.dumps(["well-probe.level", time.time_ns(), 1.82]).encode(), qos=1))
    assert sn.receive() == codec.PubAck(regack.topic_id, 2, ReturnCode.ACCEPTED)
    sn.send(codec.Publish(regack.topic_id, 3, b'[["well-probe.level", 1, "high"]]', qos=1))
    assert sn.receive() == codec.PubAck(regack.topic_id, 3, ReturnCode.NOT_SUPPORTED)
    return sn, regack.topic_id


@pytest.fixture(scope="module")
def garden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Garden]:
    gateway = Gateway(tmp_path_factory.mktemp("page") / "data").start()
    found = Garden(gateway, 0)
    try:
        found.mqtt.append(Client(gateway.mqtt_port, "garden-1"))
        found.history_readings = sensors.publish_history(found.mqtt[0])
        found.mqttsn.append(sensors.sleepy_probe(gateway.mqttsn_port))
        awake, found.awake_topic_id = _awake_probe(gateway.mqttsn_port)
        found.mqttsn.append(awake)
        found.mqtt.append(Client(gateway.mqtt_port, "bad-firmware"))
        found.mqtt[1].publish("db/append/SENSORS", sensors.BAD_PAYLOAD, qos=1)
        old = Client(gateway.mqtt_port, "old-sensor")
        old.publish("db/append/SENSORS", json.dumps(["old-sensor.temp", time.time_ns(), 9.5]), qos=1)
        old.close()
        yield found
    finally:
        for client in found.mqtt:
            client.close()
        for sn in found.mqttsn:
            sn.close()
        gateway.kill()


@dataclass
class Visit:
    """A browser context on the gateway's page, with what it logged and requested."""

    origin: str
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    allowed_errors: list[re.Pattern[str]] = field(default_factory=list)

    def open(self, fragment: str = "") -> Page:
        self.page.goto(f"{self.origin}/{fragment}")
        return self.page

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    def check(self) -> None:
        errors = [e for e in self.errors if not any(p.search(e) for p in self.allowed_errors)]
        assert not errors, f"console errors: {errors}"
        away = [url for url in self.requests if not url.startswith(self.origin + "/") and not url.startswith("blob:")]
        assert not away, f"requests away from the gateway: {away}"


@pytest.fixture
def visit(browser: Browser) -> Iterator[Callable[..., Visit]]:
    made: list[Visit] = []

    def open_context(origin: str, viewport: ViewportSize = DESKTOP, color_scheme: Scheme = "light") -> Visit:
        context = browser.new_context(viewport=viewport, color_scheme=color_scheme, accept_downloads=True)
        page = context.new_page()
        found = Visit(origin, context, page)
        made.append(found)

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                found.errors.append(message.text)

        def refuse(route: Route) -> None:
            route.abort("blockedbyclient")

        page.on("console", console)
        page.on("pageerror", lambda error: found.errors.append(f"uncaught: {error}"))
        page.on("request", lambda request: found.requests.append(request.url))

        context.route(lambda url: not url.startswith(origin + "/"), refuse)
        return found

    yield open_context
    try:
        for found in made:
            found.check()
    finally:
        for found in made:
            found.context.close()
