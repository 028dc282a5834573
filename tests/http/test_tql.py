"""`POST /db/tql` against a running gateway: CSV() and JSON() answer what /db/query answers for the same data, CHART
answers neo's JSON with absolute URLs built from the Host header, the chart's script and ECharts are served, errors
are 400s naming the line and column. The chart drawn in a real browser: tests/page/test_walkthrough.py."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path

import pytest

from gateway.http.tql import ECHARTS_DIR, ChartCache
from tests.conftest import Client, Gateway
from tests.tql.walkthrough import WALKTHROUGH

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
# Two series, one reading a second; "temperature" has 30 readings, "humidity" 5.
TEMPERATURES: list[tuple[str, int, float]] = [("temperature", T0 + i * S, 20 + (i % 7) * 0.5) for i in range(30)]
HUMIDITIES: list[tuple[str, int, float]] = [("humidity", T0 + i * S, 40.0 + i) for i in range(5)]
LAST = T0 + 29 * S
# Every listener on a port of the kernel's choosing, so that tests running side by side never collide.
FREE_PORTS = ("--ws-port", "0")


def call(
    gateway: Gateway, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Message, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.endpoints["http"], timeout=30)
    try:
        connection.request(method, path, body=body.encode() if isinstance(body, str) else body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def tql(gateway: Gateway, script: str, **headers: str) -> tuple[int, Message, bytes]:
    return call(gateway, "POST", "/db/tql", script, {k.replace("_", "-"): v for k, v in headers.items()})


def query(gateway: Gateway, sql: str, fmt: str = "json") -> bytes:
    status, _, body = call(gateway, "GET", "/db/query?" + urllib.parse.urlencode({"q": sql, "format": fmt}))
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    found = Gateway(tmp_path_factory.mktemp("tql") / "data", extra_args=FREE_PORTS).start()
    try:
        client = Client(found.mqtt_port, "tql-test")
        client.publish("db/append/EXAMPLE", json.dumps(TEMPERATURES + HUMIDITIES), qos=1)
        client.close()
        yield found
    finally:
        found.kill()


RANGE = f"between({T0 + 5 * S}, 'last - 10s')"  # 'last' is T0 + 29 s: readings 5 to 19
SQL_RANGE = f"name = 'temperature' and time between {T0 + 5 * S} and {T0 + 19 * S}"


def test_json_answers_what_db_query_answers_for_the_same_data(gateway: Gateway) -> None:
    status, headers, body = tql(
        gateway, f"SQL_SELECT('time', 'value', from('example', 'temperature'), {RANGE})\nJSON()"
    )
    assert status == 200 and headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    expected = json.loads(query(gateway, f"select time, value from example where {SQL_RANGE}"))
    assert answer["success"] is True and answer["reason"] == "success" and re.fullmatch(r"[0-9.]+ms", answer["elapse"])
    assert answer["data"] == expected["data"]
    assert answer["data"]["columns"] == ["TIME", "VALUE"] and answer["data"]["types"] == ["datetime", "double"]
    assert answer["data"]["rows"] == [[t, v] for _, t, v in TEMPERATURES[5:20]]


def test_csv_answers_what_db_query_answers_with_a_header_line_only_when_asked(gateway: Gateway) -> None:
    expected = query(gateway, f"select * from example where {SQL_RANGE}", "csv").decode()
    source = f"SQL_SELECT('name', 'time', 'value', from('example', 'temperature'), {RANGE})"
    status, headers, with_header = tql(gateway, f"{source}\nCSV(header(true))")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert with_header.decode() == expected
    assert expected.splitlines()[0] == "NAME,TIME,VALUE" and len(expected.splitlines()) == 16
    _, _, bare = tql(gateway, f"{source}\nCSV()")
    assert bare.decode() == expected.split("\n", 1)[1]


def test_sql_runs_our_sql_subset(gateway: Gateway) -> None:
    sql = "select name, avg(value) from example group by name"
    status, _, body = tql(gateway, f"SQL(`{sql}`)\nJSON()")
    assert status == 200
    assert json.loads(body)["data"] == json.loads(query(gateway, sql))["data"]
    _, _, csv = tql(gateway, f"SQL('{sql}') CSV(header(true))")
    assert csv == query(gateway, sql, "csv")


def test_map_functions_reshape_the_records(gateway: Gateway) -> None:
    script = """SQL_SELECT('time', 'value', from('example', 'humidity'), between('last-2s', 'last'))
        MAPVALUE(0, list(value(0), value(1)))
        PUSHVALUE(1, value(1) * 2, 'double')
        FILTER(value(2) > 42)
        POPVALUE(2)
        JSON()"""
    status, _, body = tql(gateway, script)
    assert status == 200, body
    data = json.loads(body)["data"]
    assert data["columns"] == ["TIME", "double"] and data["types"] == ["list", "double"]
    assert data["rows"] == [[[T0 + 3 * S, 43.0], 86.0], [[T0 + 4 * S, 44.0], 88.0]]
    _, _, csv = tql(gateway, script.replace("JSON()", "CSV()"))
    assert csv.decode().splitlines() == [f'"[{T0 + 3 * S},43.0]",86.0', f'"[{T0 + 4 * S},44.0]",88.0']


def test_chart_answers_neos_json_with_absolute_urls_from_the_host_header(gateway: Gateway) -> None:
    status, headers, body = tql(gateway, WALKTHROUGH, Host="gateway.example:8123")
    assert status == 200 and headers["Content-Type"] == "application/json" and headers["X-Chart-Type"] == "echarts"
    answer = json.loads(body)
    assert set(answer) == {"chartID", "jsAssets", "jsCodeAssets", "style", "theme"}
    assert answer["chartID"] == "rspChart" and answer["theme"] == "dark"
    assert answer["style"] == {"width": "600px", "height": "400px"}
    assert answer["jsAssets"] == ["http://gateway.example:8123/web/echarts/echarts.min.js"]
    [script_url] = answer["jsCodeAssets"]
    assert re.fullmatch(r"http://gateway\.example:8123/web/api/tql-assets/[A-Za-z0-9_-]{20,}\.js", script_url)

    # The script, fetched from the gateway itself: it draws into #rspChart with the dark theme and every reading.
    path = urllib.parse.urlsplit(script_url).path
    status, headers, script = call(gateway, "GET", path)
    assert status == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8"
    text = script.decode()
    assert (
        'var chartID = "rspChart", theme = "dark", echartsURL = '
        '"http://gateway.example:8123/web/echarts/echarts.min.js";' in text
    )
    option = json.loads(re.search(r"var option = (.*);\n", text).group(1))  # type: ignore[union-attr]
    assert option["xAxis"] == {"type": "time", "axisLabel": {"rotate": 30, "interval": 5}}
    assert option["series"] == [{"type": "line", "data": [[t // 10**6, v] for _, t, v in TEMPERATURES]}]
    assert "echarts.init(element, theme)" in text and "chart.setOption(option, true)" in text


def test_a_chart_without_an_id_gets_one_and_each_request_its_own_script(gateway: Gateway) -> None:
    script = "SQL_SELECT('time', 'value', from('example', 'humidity')) CHART(chartOption({ s: column(1) }))"
    first = json.loads(tql(gateway, script)[2])
    second = json.loads(tql(gateway, script)[2])
    assert first["chartID"] and first["chartID"] != second["chartID"]
    assert first["jsCodeAssets"] != second["jsCodeAssets"]
    assert first["style"] == {"width": "600px", "height": "600px"} and first["theme"] == "white"
    origin = f"http://127.0.0.1:{gateway.endpoints['http']}"
    assert first["jsAssets"] == [f"{origin}/web/echarts/echarts.min.js"]
    assert first["jsCodeAssets"][0].startswith(f"{origin}/web/api/tql-assets/")


def test_a_browser_asking_for_html_gets_a_page(gateway: Gateway) -> None:
    status, headers, body = tql(gateway, WALKTHROUGH, Accept="text/html,application/xhtml+xml,*/*;q=0.8")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    origin = f"http://127.0.0.1:{gateway.endpoints['http']}"
    assert f'<script src="{origin}/web/echarts/echarts.min.js"></script>' in page
    assert '<div id="rspChart" style="width:600px;height:400px"></div>' in page
    assert re.search(rf'<script src="{re.escape(origin)}/web/api/tql-assets/[A-Za-z0-9_-]+\.js"></script>', page)
    # neo's X-Chart-Output: json, or chartJson(true), keep the JSON answer.
    _, headers, _ = tql(gateway, WALKTHROUGH, Accept="text/html", X_Chart_Output="json")
    assert headers["Content-Type"] == "application/json"
    _, headers, _ = tql(gateway, WALKTHROUGH.replace("theme('dark')", "chartJson(true)"), Accept="text/html")
    assert headers["Content-Type"] == "application/json"


def test_echarts_is_served_from_the_vendored_copy_gzipped_and_revalidated(gateway: Gateway) -> None:
    vendored = (ECHARTS_DIR / "echarts.min.js").read_bytes()
    status, headers, body = call(gateway, "GET", "/web/echarts/echarts.min.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(vendored).hexdigest()
    status, zipped_headers, zipped = call(
        gateway, "GET", "/web/echarts/echarts.min.js", headers={"Accept-Encoding": "gzip"}
    )
    assert zipped_headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == vendored
    assert len(zipped) < len(vendored) / 2
    status, _, empty = call(gateway, "GET", "/web/echarts/echarts.min.js", headers={"If-None-Match": headers["ETag"]})
    assert status == 304 and empty == b""
    status, headers, notice = call(gateway, "GET", "/web/echarts/NOTICE")
    assert status == 200 and b"Apache ECharts" in notice
    status, _, body = call(gateway, "GET", "/web/echarts/..%2f..%2fapi.py")
    assert status == 404 and json.loads(body)["success"] is False


def test_an_unknown_or_expired_chart_script_is_a_json_404(gateway: Gateway) -> None:
    status, headers, body = call(gateway, "GET", "/web/api/tql-assets/nothing.js")
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "success": False,
        "reason": "no chart nothing.js: charts are kept 10 minutes; run the TQL script again",
    }


ERRORS = [
    (
        "SQL_SELECT('time', from('example', 'temperature'))\n  CSV(",
        2,
        7,
        "expected ) to close CSV(, found the end of the script",
    ),
    ("SQL('select * from nothere')\nCSV()", 1, 1, "SQL(): no table NOTHERE"),
    (
        "SQL('select nope from example')\nCSV()",
        1,
        1,
        "SQL(): unknown column NOPE: a tag table has NAME, TIME and VALUE (at position 7)",
    ),
    ("SQL('drop table example')\nCSV()", 1, 1, "SQL(): TQL only reads: create and drop tables through /db/query"),
    (
        "SQL_SELECT('time', 'value', from('example', 'temperature'))\nMAPVALUE(5, 1)\nJSON()",
        2,
        10,
        "MAPVALUE(): index 5 is out of range",
    ),
    (
        "SQL_SELECT('time', from('example', 'x'), between('yesterday', 'now'))\nJSON()",
        1,
        50,
        "between(): 'yesterday' is not a time",
    ),
]


@pytest.mark.parametrize(("script", "line", "column", "reason"), ERRORS)
def test_errors_are_400s_naming_line_and_column(
    gateway: Gateway, script: str, line: int, column: int, reason: str
) -> None:
    status, headers, body = tql(gateway, script)
    assert status == 400 and headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert answer["success"] is False and (answer["line"], answer["column"]) == (line, column)
    assert answer["reason"].startswith(f"line {line}, column {column}: {reason}")


def test_the_example_table_still_exists_after_the_drop_attempt(gateway: Gateway) -> None:
    assert json.loads(query(gateway, "select count(*) from example"))["data"]["rows"] == [[35]]


def test_bad_bodies(gateway: Gateway) -> None:
    status, _, body = call(gateway, "POST", "/db/tql", b"CSV(\xff)")
    assert status == 400 and json.loads(body)["reason"] == "the script is not valid UTF-8"
    status, _, body = call(gateway, "POST", "/db/tql", b"//" + b"x" * (64 << 10))
    assert status == 413 and "at most 65536 bytes" in json.loads(body)["reason"]
    status, _, body = call(gateway, "GET", "/db/tql")
    assert status == 405


def test_pages_elsewhere_may_read_charts(gateway: Gateway) -> None:
    """The walk-through's page is a local file: its fetch() has Origin: null and needs no preflight."""
    status, headers, _ = tql(gateway, WALKTHROUGH, Origin="null", Content_Type="text/plain;charset=UTF-8")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"


def test_the_token_for_reads_covers_db_tql_but_not_a_charts_files(gateway_factory: Callable[..., Gateway]) -> None:
    guarded = gateway_factory(
        '[http]\ntoken = "s3cret"\ntoken_for_reads = true\n', name="guarded", extra_args=FREE_PORTS
    )
    script = "SQL('select * from m$sys_tables') CSV()"
    status, _, body = tql(guarded, script)
    assert status == 401 and "needs the API token" in json.loads(body)["reason"]
    status, _, body = tql(guarded, "SQL('select * from nothere')\nCHART()", Authorization="Bearer s3cret")
    assert status == 400 and json.loads(body)["line"] == 1  # past the token: the script ran
    assert call(guarded, "GET", "/web/echarts/NOTICE")[0] == 200


def test_the_chart_cache_forgets_old_scripts_and_keeps_to_its_size() -> None:
    cache = ChartCache(keep=10, limit=100)
    cache.put("a", b"x" * 40, now=0)
    cache.put("b", b"y" * 40, now=5)
    assert cache.get("a", now=9) == b"x" * 40
    assert cache.get("a", now=10) is None and cache.get("b", now=10) == b"y" * 40  # a's ten seconds are over
    cache.put("c", b"z" * 40, now=11)
    cache.put("d", b"w" * 40, now=12)  # 120 bytes: the oldest (b) goes
    assert cache.get("b", now=12) is None and cache.get("c", now=12) and cache.get("d", now=12)
    cache.put("huge", b"h" * 500, now=13)  # larger than the limit alone: kept, the others go
    assert len(cache) == 1 and cache.get("huge", now=13)


def test_time_is_not_left_to_chance(gateway: Gateway) -> None:
    """'last' is the series' newest reading, not the clock: the fixture's readings are from 2023."""
    status, _, body = tql(
        gateway, "SQL_SELECT('time', from('example', 'temperature'), between('now-1h', 'now')) JSON()"
    )
    assert status == 200 and json.loads(body)["data"]["rows"] == []
    assert time.time_ns() > LAST
    _, _, body = tql(gateway, "SQL_SELECT('time', from('example', 'temperature'), between('last', 'last')) JSON()")
    assert json.loads(body)["data"]["rows"] == [[LAST]]


def test_vendored_files_are_where_the_package_data_puts_them() -> None:
    names = sorted(p.name for p in ECHARTS_DIR.iterdir())
    assert names == ["LICENSE", "NOTICE", "README.md", "echarts.min.js"]
    assert Path(ECHARTS_DIR / "echarts.min.js").read_bytes().startswith(b"\n/*\n* Licensed to the Apache")
