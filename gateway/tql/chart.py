"""The text of a CHART() answer: the JavaScript that draws it and, when a browser asks for a page, the HTML.

Pure: a `Chart` (evaluate.py) and the URLs in, text out. The HTTP layer (gateway/http/tql.py) keeps the script for
a while and serves it; machbase-neo's pages load it with `<script src>` from whatever origin they come from (often a
local file), so every URL in it is absolute.
"""

from __future__ import annotations

import html

import orjson

from gateway.tql.evaluate import Chart

__all__ = ["chart_page", "chart_script"]


def _js(value: object) -> str:
    """A JavaScript literal of JSON data, safe inside an HTML <script> too (no "</script>" can end it early)."""
    return orjson.dumps(value).decode().replace("</", "<\\/").replace("<!--", "<\\!--")


# The script draws whether or not the page loaded ECharts before it: a page written for neo has its own
# <script src=".../web/echarts/echarts.min.js">, but it is loaded in parallel with this one and may come later, and
# the walk-through's page adds this script asynchronously. Several charts share one <script> for ECharts. A page
# that asks again (the walk-through does every second) reuses the chart on the element, so nothing piles up.
_SCRIPT = """\
// Drawn by the gateway for TQL's CHART() with Apache ECharts, which it loads first when the page has not.
(function () {
  "use strict";
  var chartID = %(id)s, theme = %(theme)s, echartsURL = %(echarts)s;
  var option = %(option)s;
  function draw() {
    var element = document.getElementById(chartID);
    if (!element) {
      console.error("CHART(): the page has no element with the id " + chartID);
      return;
    }
    var chart = echarts.getInstanceByDom(element);
    if (chart && element.getAttribute("data-chart-theme") !== theme) {
      chart.dispose();
      chart = undefined;
    }
    if (!chart) {
      chart = echarts.init(element, theme);
      element.setAttribute("data-chart-theme", theme);
    }
    chart.setOption(option, true);
  }
  if (window.echarts) {
    draw();
    return;
  }
  var loader = document.querySelector("script[data-gateway-echarts]");
  if (!loader) {
    loader = document.createElement("script");
    loader.src = echartsURL;
    loader.setAttribute("data-gateway-echarts", "");
    loader.addEventListener("error", function () {
      console.error("CHART(): could not load ECharts from " + echartsURL);
    });
    (document.head || document.documentElement).appendChild(loader);
  }
  loader.addEventListener("load", function () {
    if (window.echarts) draw();
  });
})();
"""


def chart_script(chart: Chart, chart_id: str, echarts_url: str) -> str:
    """The JavaScript that draws `chart` in the element `chart_id`, loading ECharts from `echarts_url` if needed."""
    return _SCRIPT % {
        "id": _js(chart_id),
        "theme": _js(chart.theme),
        "echarts": _js(echarts_url),
        "option": _js(chart.option),
    }


def chart_page(chart: Chart, chart_id: str, echarts_url: str, script_url: str) -> str:
    """A page that shows the chart alone, for a browser that asked for HTML."""
    style = f"width:{chart.width};height:{chart.height}"
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(chart_id)}</title>\n"
        f'<script src="{html.escape(echarts_url)}"></script>\n'
        '</head>\n<body style="margin:0">\n'
        f'<div id="{html.escape(chart_id)}" style="{html.escape(style)}"></div>\n'
        f'<script src="{html.escape(script_url)}"></script>\n'
        "</body>\n</html>\n"
    )
