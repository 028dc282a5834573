"""Each view of the web page in headless Chromium against a running gateway, with readings published over MQTT and
MQTT-SN: what a person opening http://gateway.local/ sees. Screenshots of every view are saved in
test-artifacts/page/ (light, dark, and a phone's 390 px), and every visit is checked for console errors and for
requests that leave the gateway (conftest.py)."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import time
from collections.abc import Callable

from playwright.sync_api import Locator, Page, expect

from tests.conftest import Client, Gateway
from tests.page.conftest import DESKTOP, PHONE, Garden, Visit
from tests.page.sensors import HISTORY_MINUTES


def number(page: Page, selector: str) -> float:
    return float(page.locator(selector).inner_text().replace(",", ""))


def points(page: Page, chart: str) -> int:
    return int(page.locator(chart).get_attribute("data-points") or 0)


def test_overview_shows_the_gateway_its_clients_and_the_latest_readings_as_they_land(
    garden: Garden, visit: Callable[..., Visit]
) -> None:
    v = visit(garden.origin)
    page = v.open()
    clients = page.locator("#card-clients")
    expect(clients).to_contain_text("MQTT-SN 2")  # the awake probe and the sleeping one
    expect(clients.locator(".badge.asleep")).to_have_text("1 asleep")
    expect(page.locator("#card-rejected .big")).to_have_text(re.compile(r"[1-9]"))
    assert number(page, "#card-clients .big") >= 3
    expect(page.locator("#card-ingest")).to_contain_text("stored since start")
    stored = page.locator("#card-ingest .card-detail").inner_text()
    assert int(re.sub(r"\D", "", stored.split("stored")[0])) >= garden.history_readings
    expect(page.locator("#connect")).to_contain_text(f"127.0.0.1:{garden.gateway.mqtt_port}")
    expect(page.locator("#connect")).to_contain_text(f"127.0.0.1:{garden.gateway.mqttsn_port}")
    tile = page.locator('.tile[data-key="SENSORS/pond-probe.water_temp"]')
    expect(tile.locator(".tile-value")).to_have_text("14.25")  # from the MQTT-SN probe, now asleep
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon and page.request.get(garden.origin + icon).headers["content-type"] == "image/svg+xml"

    # A reading lands: its tile changes without a reload, and the ingest rate is no longer a dash.
    page.evaluate("window.stillTheSamePage = true")
    expect(page.locator('.tile[data-key="SENSORS/garden-1.temperature"]')).to_be_visible()
    garden.publish("SENSORS", "garden-1.temperature", 23.75)
    expect(page.locator('.tile[data-key="SENSORS/garden-1.temperature"] .tile-value')).to_have_text("23.75")
    expect(page.locator("#card-ingest .big")).to_have_text(re.compile(r"\d"), timeout=8000)
    assert page.evaluate("window.stillTheSamePage") is True
    v.screenshot("overview-light")

    # The views are links: the keyboard reaches them from the top of the page.
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Live")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#/live"))
    page.go_back()

    # The theme button goes automatic -> light -> dark; charts and colours follow.
    page.get_by_role("button", name="Colour theme: automatic").click()
    page.get_by_role("button", name="Colour theme: light").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    v.screenshot("overview-dark")


def test_overview_shows_the_uplink_only_when_there_is_one(
    garden: Garden, visit: Callable[..., Visit], gateway_factory: Callable[..., Gateway], clients: list[Client]
) -> None:
    # The garden has no uplink: no card, and no request for one.
    v = visit(garden.origin)
    page = v.open()
    expect(page.locator("#card-ingest")).to_contain_text("stored since start")
    page.wait_for_timeout(2500)  # a second status answer
    expect(page.locator("#card-uplink")).to_be_hidden()
    assert not [url for url in v.requests if "/api/uplink" in url]

    # An upstream where nothing listens: readings wait, and the card says why.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gateway = gateway_factory(f'[uplink]\nurl = "mqtt://127.0.0.1:{port}"\n', name="uplinked")
    sensor = Client(gateway.mqtt_port, "uplink-probe")
    clients.append(sensor)
    now = time.time_ns()
    sensor.publish("db/append/PLANT", json.dumps([["temp", now, 21.5], ["hum", now, 40.0], ["lux", now, 300.0]]), qos=1)
    for viewport, scheme in ((DESKTOP, "light"), (PHONE, "dark")):
        u = visit(gateway.http_url, viewport=viewport, color_scheme=scheme)
        page = u.open()
        card = page.locator("#card-uplink")
        expect(card).to_be_visible()
        expect(card.locator(".badge")).to_have_text("not connected")
        expect(card.locator(".big")).to_have_text("3")
        expect(card.locator(".card-value")).to_contain_text("readings waiting")
        expect(card).to_contain_text(f"mqtt://127.0.0.1:{port}")
        expect(card.locator(".uplink-error.current")).to_contain_text(f"connection to 127.0.0.1:{port} refused")
        expect(card).to_have_class(re.compile(r"\balert\b"))
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"the overview is {width} px wide on a {viewport['width']} px screen"
        u.screenshot(f"overview-uplink-{scheme}-{viewport['width']}")


def test_the_series_browser_lists_every_series_and_opens_its_history(
    garden: Garden, visit: Callable[..., Visit]
) -> None:
    v = visit(garden.origin)
    page = v.open("#/series")
    rows = page.locator("table.data tbody tr")
    expect(page.locator(".summary")).to_contain_text("series in 2 tables")
    names = {re.sub(r"\s+", " ", text) for text in page.locator("td.name").all_inner_texts()}
    wanted = {"garden-1.temperature", "garden-1.battery", "greenhouse.co2", "meter.watts", "pond-probe.water_temp"}
    assert wanted <= names
    temperature = rows.filter(has=page.get_by_role("link", name="garden-1.temperature", exact=True))
    assert int(temperature.locator("td").nth(3).inner_text().replace(",", "")) >= HISTORY_MINUTES
    expect(temperature.locator("svg.spark path")).to_have_count(1)  # a sparkline of its last hour
    v.screenshot("series")

    page.get_by_role("searchbox", name="Filter series").fill("pond")
    expect(rows).to_have_count(1)
    assert "q=pond" in page.url

    page.get_by_role("link", name="pond-probe.water_temp", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/history\?s=SENSORS%2Fpond-probe.water_temp"))
    expect(page.locator('.picker-item[data-key="SENSORS/pond-probe.water_temp"] input')).to_be_checked()
    expect(page.locator("#history-chart")).to_have_attribute("data-points", "1")


def test_history_shows_a_range_per_step_zooms_and_downloads_its_csv(
    garden: Garden, visit: Callable[..., Visit]
) -> None:
    v = visit(garden.origin)
    page = v.open("#/history?s=SENSORS/garden-1.temperature&s=SENSORS/greenhouse.temperature&range=6h")
    chart = page.locator("#history-chart")
    expect(chart).to_have_attribute("data-points", re.compile(r"[1-9]\d+"))
    expect(page.locator(".chart-about")).to_contain_text("Average per 1m step")  # 6 h over ~500 points
    expect(page.locator(".chart-cell")).to_have_count(2)  # a chart per series, on one time axis
    v.screenshot("history")

    page.get_by_role("button", name="Zoom in").click()
    expect(page.locator(".chart-about")).to_contain_text("Average per 30s step")
    assert re.search(r"from=\d+&to=\d+", page.url)
    expect(page.locator('.segmented input[value="6h"]')).not_to_be_checked()

    with page.expect_download() as downloading:
        page.get_by_role("button", name="Download CSV").click()
    rows = list(csv.reader(io.StringIO(downloading.value.path().read_text())))
    assert rows[0] == ["NAME", "TIME", "AVG", "MIN", "MAX"]
    assert {row[0] for row in rows[1:]} == {"garden-1.temperature", "greenhouse.temperature"}

    dark = visit(garden.origin, color_scheme="dark")  # a system in dark mode: the charts are drawn for it
    dark.open("#/history?s=SENSORS/garden-1.temperature&s=SENSORS/greenhouse.co2&s=SENSORS/garden-1.battery&range=6h")
    expect(dark.page.locator("#history-chart")).to_have_attribute("data-points", re.compile(r"[1-9]\d+"))
    expect(dark.page.locator("html")).to_have_attribute("data-theme", "dark")
    dark.screenshot("history-dark")


def test_the_live_chart_gets_new_points_over_mqtt_and_mqtt_sn_without_a_reload(
    garden: Garden, visit: Callable[..., Visit]
) -> None:
    v = visit(garden.origin)
    page = v.open("#/live?s=SENSORS/greenhouse.temperature&s=SENSORS/well-probe.level&w=300")
    expect(page.locator(".live-state")).to_have_text("Live")
    chart = "#live-chart"
    expect(page.locator(chart)).to_have_attribute("data-points", re.compile(r"[1-9]"))
    page.evaluate("window.stillTheSamePage = true")
    before = points(page, chart)

    for value in (26.5, 27.25, 28.0):
        garden.publish("SENSORS", "greenhouse.temperature", value)
        page.wait_for_timeout(50)
    greenhouse = page.locator(".chart-cell", has_text="greenhouse.temperature")
    expect(greenhouse.locator(".chart-value")).to_have_text("28")
    garden.publish_sn("well-probe.level", 1.95)
    expect(page.locator(".chart-cell", has_text="well-probe.level").locator(".chart-value")).to_have_text("1.95")
    page.wait_for_function(f"Number(document.querySelector('{chart}').dataset.points) >= {before + 4}")
    assert page.evaluate("window.stillTheSamePage") is True
    v.screenshot("live")


def test_devices_lists_every_client_with_its_state_and_battery(garden: Garden, visit: Callable[..., Visit]) -> None:
    v = visit(garden.origin)
    page = v.open("#/devices")

    def row(client_id: str) -> Locator:
        return page.locator(f'tr[data-client="{client_id}"]')

    expect(row("pond-probe").locator(".badge")).to_have_text("asleep")
    expect(row("pond-probe")).to_contain_text("MQTT-SN")
    expect(row("well-probe").locator(".badge")).to_have_text("connected")
    expect(row("garden-1").locator(".badge")).to_have_text("connected")
    expect(row("garden-1").locator("td[data-label=Battery]")).to_have_text("3.765")
    expect(row("old-sensor").locator(".badge")).to_have_text("gone")
    expect(page.locator(".chip.asleep")).to_have_text("1 asleep")
    v.screenshot("devices")


def test_a_device_silent_for_too_long_is_flagged(garden: Garden, visit: Callable[..., Visit]) -> None:
    """The API decides what is overdue (minutes of silence): its answer is given here, to see how the page shows it."""
    v = visit(garden.origin)
    now = v.page.evaluate("Date.now() / 1000")
    device = {
        "client_id": "shed-door",
        "protocol": "mqtt-sn",
        "address": "192.0.2.7:50000",
        "state": "connected",
        "since": now - 7200,
        "last_seen": now - 1500,
        "messages": 118,
        "interval_s": 60.0,
        "overdue": True,
        "battery": None,
    }
    v.page.route("**/api/devices", lambda route: route.fulfill(json={"success": True, "devices": [device]}))
    page = v.open("#/devices")
    expect(page.locator("tr.overdue .warning")).to_have_text("⚠ silent for 25 min, usually every 1 min")
    expect(page.locator(".chip.overdue")).to_have_text("1 silent too long")


def test_errors_shows_why_payloads_were_refused(garden: Garden, visit: Callable[..., Visit]) -> None:
    v = visit(garden.origin)
    page = v.open("#/errors")
    items = page.locator(".error-item")
    mqtt = items.filter(has_text="bad-firmware")
    expect(mqtt.locator(".error-reason")).to_have_text("row 1: value 'warm' is not a number")
    expect(mqtt).to_contain_text("db/append/SENSORS")
    expect(mqtt.locator(".badge")).to_have_text("MQTT")
    sn = items.filter(has_text="well-probe")
    expect(sn.locator(".badge")).to_have_text("MQTT-SN")
    expect(sn.locator(".error-reason")).to_contain_text("is not a number")
    expect(page.locator(".summary")).to_contain_text("refused since the gateway started")
    v.screenshot("errors")


def test_query_answers_sql_as_a_table_a_chart_and_csv(garden: Garden, visit: Callable[..., Visit]) -> None:
    v = visit(garden.origin)
    page = v.open("#/query")
    sql = page.get_by_role("textbox", name="SQL")
    # The view puts its first example into the box once the latest readings are in, then runs it: typing before that
    # races it (Playwright's fill selects the text, the example lands, the typing goes after it).
    expect(page.locator("#query-result .summary")).to_contain_text("rows")
    sql.fill("SELECT name, time, value FROM sensors WHERE name = 'garden-1.humidity' ORDER BY time DESC LIMIT 30")
    sql.press("Control+Enter")
    result = page.locator("#query-result")
    expect(result.locator(".summary")).to_contain_text("30 rows")
    expect(result.locator("table.data tbody tr")).to_have_count(30)
    expect(result.locator(".chart-panel")).to_have_attribute("data-points", "30")
    assert "q=SELECT" in page.url
    v.screenshot("query")
    with page.expect_download() as downloading:
        page.get_by_role("button", name="Download CSV").click()
    lines = downloading.value.path().read_text().splitlines()
    assert lines[0] == "NAME,TIME,VALUE" and len(lines) == 31

    sql.fill("SELECT nonsense FROM sensors")
    page.get_by_role("button", name="Run").click()
    expect(result.locator(".error")).to_be_visible()
    v.allowed_errors.append(re.compile(r"status of 400"))  # the refused query's answer, logged by Chromium


# Controls that a screen reader could not name: inputs without a label, buttons and links without text or aria-label.
UNLABELLED = """() => [...document.querySelectorAll("input, textarea, select, button, a[href]")]
    .filter((el) => !(el.labels?.length || el.getAttribute("aria-label") || el.textContent.trim()))
    .map((el) => el.outerHTML.slice(0, 80))"""


def test_every_view_fits_a_phone_without_sideways_scrolling_and_names_its_controls(
    garden: Garden, visit: Callable[..., Visit]
) -> None:
    v = visit(garden.origin, viewport=PHONE)
    ready = {
        "": "#recent .tile",
        "live": "#live-chart[data-points]",
        "series": "table.data",
        "history": "#history-chart[data-points]",
        "devices": "table.data",
        "query": "#query-result table",
        "errors": ".error-item",
    }
    for view, selector in ready.items():
        page = v.open(f"#/{view}")
        expect(page.locator(selector).first).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"#/{view} is {width} px wide on a {PHONE['width']} px screen"
        assert page.evaluate(UNLABELLED) == [], f"#/{view}"
        v.screenshot(f"phone-{view or 'overview'}")
