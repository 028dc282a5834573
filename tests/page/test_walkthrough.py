"""machbase-neo's walk-through, against the gateway, in real headless Chromium: the table created with neo's own
CREATE TAG TABLE through /db/query, a reading published with neo's mosquitto_pub line, a (shortened) paho-mqtt loop
publishing temperatures, and neo's chart page saved as a local file with only the host and port changed. Opened
from file:// (another origin: it needs CORS on /db/tql), the page asks /db/tql for a CHART and loads the script it
names; the test reads the chart back from ECharts and checks it drew the published values. A screenshot goes to
test-artifacts/page/walkthrough.png."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, ConsoleMessage

from tests.conftest import Gateway, mosquitto_env
from tests.page.conftest import ARTIFACTS

# neo's SQL guide ("Create table"), as people paste it, semicolon included.
CREATE = """CREATE TAG TABLE IF NOT EXISTS example (
  name varchar(100) primary key,
  time datetime basetime,
  value double summarized
);"""
# neo's MQTT write guide ("Single record per a publish"); {port} is the only change (neo listens on 5653).
MOSQUITTO_PUB = (
    """mosquitto_pub -h 127.0.0.1 -p {port} -t db/append/EXAMPLE -m '[ "my-car", 1670380342000000000, 32.1 ]'"""
)
# neo's web-app tutorial page, with the walk-through's TQL; "127.0.0.1:5654" is replaced by the gateway's host and
# port, and nothing else changes.
PAGE = """<html>
<head>
    <script>
        function loadJS(url) {
            var scriptElement = document.getElementById("chartScript")
            if ( scriptElement != null) {
                scriptElement.remove()
            }
            scriptElement = document.createElement('script');
            scriptElement.id = "chartScript"
            scriptElement.src = url;
            document.getElementsByTagName('head')[0].appendChild(scriptElement);
        }

        function chartData() {
            fetch("http://127.0.0.1:5654/db/tql", {method: "POST", body: `
              SQL_SELECT("time", "value", from("example", "temperature"), between("last-60s", "last"))
              MAPVALUE(0, list(value(0), value(1)))
              POPVALUE(1)
              CHART(size("600px", "400px"), chartID('rspChart'), theme('dark'),
                    chartOption({ xAxis:{ type: "time", axisLabel: { rotate: 30, interval:5 } }, yAxis:{ },
                                  animation: true, series:[ { type:"line", data:column(0) } ] }))`})
             .then(rsp => rsp.json())
             .then(obj => {
                document.getElementById('rspChart').style.width = obj.style.width
                document.getElementById('rspChart').style.height = obj.style.height
                obj.jsCodeAssets.forEach(js => loadJS(js))
             })
        }
    </script>
    <script src="http://127.0.0.1:5654/web/echarts/echarts.min.js"></script>
</head>
<body>
    <h4> Chart </h4>
    <a href="#" onClick="chartData()">Chart</a>
    <div id=rspChart></div>
</body>
</html>
"""
# What ECharts drew, read in the page: the option it holds and how many distinct colours its canvas has.
READ_CHART = """() => {
    const element = document.getElementById('rspChart');
    const chart = window.echarts && echarts.getInstanceByDom(element);
    if (!chart) return null;
    const canvas = element.querySelector('canvas');
    if (!canvas || !canvas.width || !canvas.height) return null;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    for (let i = 0; i < pixels.length; i += 4 * 7) colours.add(pixels.slice(i, i + 4).join());
    const option = chart.getOption();
    return {data: option.series[0].data, type: option.series[0].type, xAxis: option.xAxis[0].type,
            width: canvas.clientWidth, height: canvas.clientHeight, colours: colours.size,
            style: [element.style.width, element.style.height]};
}"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    # Every listener on a free port (MQTT over WebSocket included), so that tests running side by side never collide.
    found = Gateway(tmp_path / "data", extra_args=("--ws-port", "0")).start()
    try:
        yield found
    finally:
        found.kill()


def db_query(gateway: Gateway, sql: str) -> Any:
    url = f"{gateway.http_url}/db/query?" + urllib.parse.urlencode({"q": sql})
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def publish_temperatures(port: int) -> list[tuple[int, float]]:
    """The walk-through's publisher, shortened: nine readings of 1 to 9 at QoS 1, a few milliseconds apart."""
    published: list[tuple[int, float]] = []
    acked: list[int] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, "python_pub", clean_session=True)
    client.on_publish = lambda c, u, mid, rc, props: acked.append(mid)
    client.connect("127.0.0.1", port=port, keepalive=10)
    client.loop_start()
    try:
        for value in range(1, 10):
            at = time.time_ns()
            info = client.publish("db/append/example", json.dumps(["temperature", at, value]), qos=1)
            info.wait_for_publish(10)
            published.append((at, float(value)))
            time.sleep(0.01)
    finally:
        client.disconnect()
        client.loop_stop()
    assert len(acked) == 9  # QoS 1: each PUBACK means the reading is stored
    return published


ECHARTS_TAG = '    <script src="http://127.0.0.1:5654/web/echarts/echarts.min.js"></script>\n'


@pytest.mark.parametrize("page_text", [PAGE, PAGE.replace(ECHARTS_TAG, "")], ids=["neo-page", "without-echarts-tag"])
def test_the_walkthrough_page_draws_the_published_temperatures(
    gateway: Gateway, browser: Browser, tmp_path: Path, page_text: str
) -> None:
    """neo's page as is, and without its <script> for ECharts: the chart's script then loads ECharts itself."""
    # 1. The table, with neo's statement, through /db/query (no token needed for CREATE TAG TABLE).
    assert db_query(gateway, CREATE)["success"] is True

    # 2. neo's mosquitto_pub line, run as a shell would run it.
    line = MOSQUITTO_PUB.format(port=gateway.mqtt_port)
    done = subprocess.run(["sh", "-c", line], env=mosquitto_env(), capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr

    # 3. The publishing loop.
    published = publish_temperatures(gateway.mqtt_port)
    rows = db_query(gateway, "select name, time, value from example order by name")["data"]["rows"]
    assert ["my-car", 1670380342000000000, 32.1] in rows
    assert [[t, v] for name, t, v in rows if name == "temperature"] == [[t, v] for t, v in published]

    # 4. The page, as a local file: only the host and port change.
    page_file = tmp_path / "walkthrough.html"
    http_port = gateway.endpoints["http"]
    page_file.write_text(page_text.replace("127.0.0.1:5654", f"127.0.0.1:{http_port}"))
    assert page_file.read_text().count(f"127.0.0.1:{http_port}") == page_text.count("127.0.0.1:5654") >= 1
    assert "5654" not in page_file.read_text()

    context = browser.new_context(viewport={"width": 900, "height": 700})
    errors: list[str] = []
    requests: list[str] = []
    try:
        page = context.new_page()

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(message.text)

        page.on("console", console)
        page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_file.as_uri())
        page.get_by_text("Chart", exact=True).last.click()

        # Within a few seconds: a canvas with a drawn chart (a line, axes and labels: many colours, not a blank
        # rectangle) whose points are the published readings, [milliseconds, value] on a time axis.
        page.wait_for_function(
            READ_CHART.replace("return {", "return option.series[0].data.length < 9 ? null : {"), timeout=10_000
        )
        drawn = page.evaluate(READ_CHART)
        assert drawn["type"] == "line" and drawn["xAxis"] == "time"
        assert drawn["data"] == [[t // 10**6, v] for t, v in published]
        assert drawn["style"] == ["600px", "400px"]
        assert (drawn["width"], drawn["height"]) == (600, 400)
        assert drawn["colours"] > 20, drawn["colours"]

        # The page asks again (neo's page does every second): the same chart is updated, not a second one made.
        # The screenshot waits for the redrawn chart's animation to finish (the first one's, a second long by
        # ECharts' default, is over before the page asks again).
        page.wait_for_timeout(1500)
        page.evaluate(
            "echarts.getInstanceByDom(document.getElementById('rspChart'))"
            ".on('finished', () => { window.chartFinished = true })"
        )
        page.get_by_text("Chart", exact=True).last.click()
        page.wait_for_function(
            "window.chartFinished === true && "
            "document.querySelectorAll('#chartScript').length == 1 && "
            "document.querySelectorAll('#rspChart canvas').length == 1 && "
            "document.querySelectorAll('script[data-gateway-echarts]').length <= 1"
        )
        assert page.evaluate(READ_CHART)["data"] == drawn["data"]
        if page_text == PAGE:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=ARTIFACTS / "walkthrough.png", full_page=True)
    finally:
        context.close()

    assert not errors, f"console errors: {errors}"
    origin = f"http://127.0.0.1:{http_port}/"
    away = [url for url in requests if not url.startswith(origin) and not url.startswith("file://")]
    assert not away, f"requests away from the gateway: {away}"
    assert f"{origin}db/tql" in requests and f"{origin}web/echarts/echarts.min.js" in requests
    assert any(url.startswith(f"{origin}web/api/tql-assets/") for url in requests)
