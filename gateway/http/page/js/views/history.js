// History: the chosen series over a time range, as averages per step with the min-max band (GET /api/query with
// step and aggregate=avg,min,max). The step grows with the range, about 500 points across it: steps of whole
// minutes and hours are answered from the rollups, so a year of data stays fast. Zoom by dragging across the chart
// or with the buttons, pan with the arrows; the CSV is the same request with format=csv.

import { api, apiUrl, download } from "../api.js";
import { byTable, latestReadings, parseKey, picker } from "../catalogue.js";
import { ChartGroup } from "../charts.js";
import { h, segmented, setParams, whenLeft } from "../dom.js";
import * as fmt from "../format.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const RANGES = [
  ["1h", "1 h", HOUR],
  ["6h", "6 h", 6 * HOUR],
  ["24h", "24 h", DAY],
  ["7d", "7 d", 7 * DAY],
  ["30d", "30 d", 30 * DAY],
  ["365d", "1 year", 365 * DAY],
];
// Steps in seconds, each a divisor of the next larger unit, so that steps line up with minutes, hours and days.
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800];
const POINTS = 500;

const stepFor = (ms) => STEPS.find((s) => s * 1000 * POINTS >= ms) ?? STEPS.at(-1);
const stepText = (s) =>
  s % 86400 === 0 ? `${s / 86400}d` : s % 3600 === 0 ? `${s / 3600}h` : s % 60 === 0 ? `${s / 60}m` : `${s}s`;

export function mount(root, params, signal) {
  let keys = params.getAll("s");
  let preset = params.get("range") ?? (params.has("from") ? null : "24h");
  let from = Number(params.get("from"));
  let to = Number(params.get("to"));
  const area = h("div.chart-area", { id: "history-chart" });
  const about = h("div.chart-about");
  const side = h("aside.side", { "aria-label": "Series" });
  const presets = h("div.preset-box");
  const fromInput = h("input", { type: "datetime-local", id: "history-from" });
  const toInput = h("input", { type: "datetime-local", id: "history-to" });

  const save = () => {
    const p = new URLSearchParams(keys.map((k) => ["s", k]));
    if (preset) p.set("range", preset);
    else {
      p.set("from", Math.round(from));
      p.set("to", Math.round(to));
    }
    setParams(p);
  };
  // A range of its own (zoomed, panned or typed): no preset is checked any more.
  const setRange = (start, end) => {
    preset = null;
    const now = fmt.now();
    [from, to] = [Math.max(0, start), Math.min(end, now + DAY)];
    draw();
  };
  const shift = (fraction) => setRange(from + (to - from) * fraction, to + (to - from) * fraction);
  const zoom = (factor) => {
    const middle = (from + to) / 2;
    const half = Math.max(10_000, ((to - from) * factor) / 2);
    setRange(middle - half, middle + half);
  };

  root.append(
    h("div.view-head", {}, h("h1", {}, "History"), presets),
    h(
      "div.split",
      {},
      side,
      h(
        "section.panel.chart-panel",
        { "aria-label": "History chart" },
        h(
          "div.range-bar",
          {},
          h(
            "div.button-row",
            {},
            h("button", { type: "button", onclick: () => shift(-0.5), "aria-label": "Earlier", title: "Earlier" }, "◀"),
            h("button", { type: "button", onclick: () => zoom(0.5), "aria-label": "Zoom in", title: "Zoom in" }, "+"),
            h("button", { type: "button", onclick: () => zoom(2), "aria-label": "Zoom out", title: "Zoom out" }, "−"),
            h("button", { type: "button", onclick: () => shift(0.5), "aria-label": "Later", title: "Later" }, "▶"),
          ),
          h(
            "form.custom-range",
            {
              onsubmit: (event) => {
                event.preventDefault();
                const start = new Date(fromInput.value).getTime();
                const end = new Date(toInput.value).getTime();
                if (start < end) setRange(start, end);
              },
            },
            h("label", { for: "history-from" }, "From"),
            fromInput,
            h("label", { for: "history-to" }, "to"),
            toInput,
            h("button", { type: "submit" }, "Show"),
          ),
        ),
        area,
        about,
      ),
    ),
  );

  let chart = null;
  let generation = 0; // answers to an older range or selection are dropped
  whenLeft(signal, () => chart?.destroy());

  async function draw() {
    save();
    if (preset) {
      to = fmt.now();
      from = to - RANGES.find(([name]) => name === preset)[2];
    }
    presets.replaceChildren(
      segmented("range", "Time range", RANGES, preset, (name) => {
        preset = name;
        draw();
      }),
    );
    fromInput.value = fmt.localInput(from);
    toInput.value = fmt.localInput(to);
    chart?.destroy();
    chart = null;
    area.replaceChildren();
    about.replaceChildren();
    if (!keys.length) {
      area.append(h("p.empty", {}, "Choose one or more series."));
      return;
    }
    const mine = ++generation;
    const step = stepText(stepFor(to - from));
    const requests = [...byTable(keys)].map(([table, names]) => ({
      table,
      name: names,
      from: fmt.msToNs(from),
      to: fmt.msToNs(to),
      step,
      aggregate: "avg,min,max",
    }));
    let answers;
    try {
      answers = await Promise.all(requests.map((p) => api("/api/query", p)));
    } catch (error) {
      if (mine === generation) area.replaceChildren(h("p.error", {}, error.message));
      return;
    }
    if (mine !== generation || signal.aborted) return;
    const per = new Map(keys.map((k) => [k, { times: [], avg: [], min: [], max: [] }]));
    answers.forEach((answer, i) => {
      for (const [name, time, avg, min, max] of answer.rows) {
        const p = per.get(`${requests[i].table}/${name}`);
        p.times.push(fmt.nsToMs(time) / 1000);
        p.avg.push(avg);
        p.min.push(min);
        p.max.push(max);
      }
    });
    chart = new ChartGroup(
      area,
      keys.map((k) => ({ label: parseKey(k).name })),
      {
        bands: true,
        range: () => [from / 1000, to / 1000],
        onZoom: (start, end) => setRange(start * 1000, end * 1000),
      },
    );
    chart.setData(keys.map((k) => [per.get(k).times, per.get(k).avg, per.get(k).min, per.get(k).max]));
    const points = answers.reduce((n, a) => n + a.rows.length, 0);
    const csv = h(
      "button.small",
      {
        type: "button",
        onclick: () =>
          requests.forEach((p) =>
            download(
              "/api/query",
              { ...p, format: "csv" },
              `${p.table}-${new Date(from).toISOString().slice(0, 16)}.csv`,
            ).catch((error) => about.prepend(h("p.error", {}, error.message))),
          ),
      },
      "Download CSV",
    );
    about.append(
      h(
        "span",
        {},
        `Average per ${step} step, min–max shaded · ${fmt.count(points)} points · drag across the chart to zoom`,
      ),
      csv,
      ...requests.map((p) => {
        const url = apiUrl("/api/query", p);
        return h(
          "code.api-url",
          { title: "The same data from the API" },
          decodeURIComponent(`${url.pathname}${url.search}`),
        );
      }),
    );
  }

  latestReadings().then(
    (readings) => {
      if (signal.aborted) return;
      if (!keys.length && readings.length) keys = [readings[0].key];
      side.append(
        picker(readings, keys, (chosen) => {
          keys = chosen;
          draw();
        }),
      );
      draw();
    },
    (error) => side.append(h("p.error", {}, error.message)),
  );
}
